"""The release train's part of the test world, seeded on top of `seed_appstore` (conftest):
beta groups, beta reviews, versions in the states of the train and their phased releases."""

from __future__ import annotations

from dataclasses import dataclass

from bot.sandbox.appstore import FakeAppStore
from tests.conftest import IOS_APP, AppStoreWorld


@dataclass
class TrainWorld:
    qa: str  # internal group "Internal QA", has build 152
    testers: str  # external group "External Testers", empty
    crew: str  # external group "Beta Crew", has build 155 (no beta review yet)
    everyone: str  # internal group with access to every build
    b156_rejected: str  # exempt, VALID, its beta review REJECTED
    b157_approved: str  # exempt, VALID, its beta review APPROVED; attached to 2.3.1
    v231: str  # PENDING_DEVELOPER_RELEASE, build 157, phased release INACTIVE
    v220: str  # PENDING_DEVELOPER_RELEASE, build 158, no phased release
    phased231: str
    phased230: str  # 2.3.0 (READY_FOR_DISTRIBUTION): ACTIVE, day 3, paused 2 days so far


def seed_train(asc: FakeAppStore, ids: AppStoreWorld) -> TrainWorld:
    train = asc.train
    qa = train.add_group(IOS_APP, "Internal QA", internal=True)
    qa.build_ids.append(ids.b152_attached)
    testers = train.add_group(IOS_APP, "External Testers")
    crew = train.add_group(IOS_APP, "Beta Crew")
    crew.build_ids.append(ids.b155_exempt)
    everyone = train.add_group(IOS_APP, "Everyone", internal=True, all_builds=True)
    b156 = asc.add_build(IOS_APP, "156", uses_non_exempt_encryption=False)
    train.add_beta_review(b156.id, "REJECTED")
    b157 = asc.add_build(IOS_APP, "157", uses_non_exempt_encryption=False)
    train.add_beta_review(b157.id, "APPROVED")
    b158 = asc.add_build(IOS_APP, "158", uses_non_exempt_encryption=True)
    v231 = asc.add_version(IOS_APP, "2.3.1", state="PENDING_DEVELOPER_RELEASE", build_id=b157.id)
    v220 = asc.add_version(IOS_APP, "2.2.0", state="PENDING_DEVELOPER_RELEASE", build_id=b158.id)
    phased231 = train.add_phased(v231.id)
    phased230 = train.add_phased(ids.v230, "ACTIVE", day=3, paused_days=2)
    return TrainWorld(
        qa.id,
        testers.id,
        crew.id,
        everyone.id,
        b156.id,
        b157.id,
        v231.id,
        v220.id,
        phased231.id,
        phased230.id,
    )
