#!/usr/bin/env python3
"""An independent DSSE verifier for the e2e tests: securesystemslib (the
library in-toto and TUF use) checks an envelope with a PEM public key.

Usage: dsse_verify.py ENVELOPE.json KEY.pem

Exit 0, printing a JSON summary, when the envelope verifies; 1, printing
"refused: ...", when securesystemslib refuses it; 2 when the modules are
missing (scripts/test.sh installs securesystemslib[crypto]); 3 on any other
error (unreadable input), so a crash is never taken for a refusal.
"""
import json
import sys

try:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey
except ImportError as e:
    print(f"missing module: {e} (scripts/test.sh installs securesystemslib[crypto])",
          file=sys.stderr)
    sys.exit(2)


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[2], "rb") as f:
        # The keyid is securesystemslib's default for the key.
        key = SSlibKey.from_crypto(load_pem_public_key(f.read()))
    with open(sys.argv[1], encoding="utf-8") as f:
        envelope = Envelope.from_dict(json.load(f))
    try:
        envelope.verify([key], 1)
    except VerificationError as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    statement = json.loads(envelope.payload)
    print(json.dumps({
        "keyid": key.keyid,
        "keytype": key.keytype,
        "payloadType": envelope.payload_type,
        "_type": statement["_type"],
        "subjects": [s["digest"]["sha256"] for s in statement["subject"]],
    }))
    return 0


if __name__ == "__main__":
    try:
        code = main()
    except Exception as e:  # noqa: BLE001 - anything else is not a refusal
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        code = 3
    sys.exit(code)
