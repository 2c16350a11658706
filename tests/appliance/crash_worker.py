"""A journal writer or stage for the crash-safety test, killed with SIGKILL at random.

    python -m tests.appliance.crash_worker DB append   # appends batches, prints each committed batch
    python -m tests.appliance.crash_worker DB stage    # copies 'input' events to 'output', cursor-driven
"""
from __future__ import annotations

import os
import random
import sys

from appliance.journal import Journal, NewEvent


def append(j: Journal) -> None:
    rnd = random.Random()
    pid = os.getpid()
    n = 0
    while True:
        size = rnd.randint(1, 20)
        batch = f"{pid}-{n}"
        events = [NewEvent("input", 1_795_165_200_000 + i, {"batch": batch, "size": size, "i": i},
                           "p", "crash-test", key=f"{batch}:{i}") for i in range(size)]
        j.append_many(events)
        print(batch, flush=True)   # only after the commit returned
        n += 1


def stage(j: Journal) -> None:
    while True:
        with j.stage("copy") as txn:
            events, upto = txn.read_batch(50, ["input"])
            for e in events:
                txn.append(NewEvent("output", e.ts, {"of": e.id}, e.point, "copy"))   # no key: duplicates would show
            txn.advance(upto)
        if not events:
            if len(sys.argv) > 3 and sys.argv[3] == "--drain":
                return


if __name__ == "__main__":
    journal = Journal(sys.argv[1])
    {"append": append, "stage": stage}[sys.argv[2]](journal)
