"""A small bundled workload for `make demo`: about 5 seconds of Python
functions mixed with C-extension calls (zlib, json, hashlib), so the demo's
flame graph shows named Python frames with native frames below them."""
import hashlib
import json
import time
import zlib

SECONDS = 5.0


def make_records(count: int) -> list[dict]:
    """Pure Python: build some records."""
    return [{"id": i, "name": f"user-{i}", "tags": [str(i % 7), str(i % 11)]}
            for i in range(count)]


def encode_batch(records: list[dict]) -> bytes:
    """json's C encoder."""
    return json.dumps(records).encode()


def compress_chunk(data: bytes) -> bytes:
    """zlib's C compressor, at its slowest level."""
    return zlib.compress(data, 9)


def checksum(data: bytes) -> str:
    """hashlib's C digest, in a Python loop."""
    digest = b""
    for _ in range(20):
        digest = hashlib.sha256(data + digest).digest()
    return digest.hex()


def score(records: list[dict]) -> int:
    """Pure Python arithmetic."""
    total = 0
    for record in records:
        for ch in record["name"]:
            total = (total * 31 + ord(ch)) % 1_000_003
    return total


def handle_batch(size: int) -> tuple[int, int, str]:
    records = make_records(size)
    packed = compress_chunk(encode_batch(records))
    return score(records), len(packed), checksum(packed)


def main() -> None:
    end = time.monotonic() + SECONDS
    batches = 0
    while time.monotonic() < end:
        handle_batch(2000)
        batches += 1
    print(f"demo_app: {batches} batches in {SECONDS:.0f} s")


if __name__ == "__main__":
    main()
