"""pytest plugin for .ci/sanitize.sh: hypothesis without deadlines (a sanitized Debug build
runs several times slower, which must not turn into DeadlineExceeded failures)."""

from hypothesis import settings

settings.register_profile("sanitize", deadline=None)
settings.load_profile("sanitize")
