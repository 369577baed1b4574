"""SHA-256 for cache keys, from CPython's own module: importing hashlib loads
OpenSSL, 5-15 ms at every start of a tool."""
try:
    from _sha2 import sha256   # Python 3.12+
except ImportError:
    try:
        from _sha256 import sha256
    except ImportError:   # an interpreter without the builtin module
        from hashlib import sha256

__all__ = ["sha256"]
