"""How long one IAM token check takes: prints microseconds per check (a benchmark, not a test).

Run from the repository root: ``python tests/unit/credentials/bench_iam_token.py [checks]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from iam_token_samples import AKID, HOST, PORT, REGION, SECRET, SIGNED_EPOCH, make_token

from reference_proxy.credentials.iam_token import IamTokenVerifier


def main(checks: int) -> None:
    token = make_token()
    verifier = IamTokenVerifier({AKID: SECRET}, region=REGION, wall_clock=lambda: SIGNED_EPOCH + 60)
    for refused_too in (False, True):
        candidate = token[:-1] + ("0" if token[-1] != "0" else "1") if refused_too else token
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(checks):
                verdict = verifier.verify(candidate, user="app", host=HOST, port=PORT)
            best = min(best, (time.perf_counter() - start) / checks)
        assert verdict.accepted is not refused_too
        what = "bad signature" if refused_too else "accepted"
        print(f"iam token check ({what}): {best * 1e6:.1f} us per check "
              f"(best of 5 x {checks}; {1 / best:,.0f} checks/s on one core)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
