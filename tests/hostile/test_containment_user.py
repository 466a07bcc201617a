"""``user = NAME`` under a root daemon (issue 13, finding 10): the run works, as that account, and no more.

The account is made for the session (``conftest.hostile_user``); the prober of the
``user`` worlds runs under it (the other containment tests run on those worlds too).
Asserted from outside: the process's uids as the host sees them, the owner of what it
wrote in its workdir; and that nothing of the home (store, secrets, logs) reached it.
"""

from __future__ import annotations

import json
import pwd
import sys

import pytest

from tests.hostile.support import Findings

pytestmark = [pytest.mark.hostile, pytest.mark.skipif(sys.platform != "linux", reason="Linux containment")]


def test_a_run_under_an_agent_account_runs_as_that_account(user_world: Findings) -> None:
    prober = user_world.result("prober")
    assert user_world.user is not None
    uid = pwd.getpwnam(user_world.user).pw_uid
    assert set(user_world.seen["prober uids"]) == {uid}, f"the agent ran with uids {user_world.seen['prober uids']}"
    assert not prober["own workdir"]["denied"], f"the agent could not write its workdir: {prober['own workdir']}"
    assert user_world.seen["prober workdir"].get("mine.txt") == uid, user_world.seen["prober workdir"]


def test_an_agent_account_cannot_read_the_home_store_secrets_or_logs(user_world: Findings) -> None:
    prober = user_world.result("prober")
    read = {label: r for label, r in prober["reads"].items() if not r["denied"]}
    assert not read, f"the agent's account read {read}"
    assert f"hostile-secret-{user_world.token}" not in json.dumps(prober), "the secrets file's value reached the agent"
