"""The three kinds of failure a user can act on. Each message names the problem and the fix."""


class AnimateError(Exception):
    """Base class: an error whose message is meant for the user as it stands."""


class InputError(AnimateError):
    """Something about the user's inputs or options is wrong; they can fix it and retry."""


class CheckpointError(AnimateError):
    """A checkpoint could not be resolved: offline and not cached, gated, missing, or disk full."""


class ResourceError(AnimateError):
    """The machine ran out of something (GPU/CPU memory, disk)."""


class JobCancelled(AnimateError):
    """The user cancelled the job; nothing half-written is left behind."""


class PreviewUnavailable(AnimateError):
    """A preview cannot be shown now (nothing to preview yet, models not downloaded, the GPU busy): a note, not a
    failure."""


EXIT_CODES = ((InputError, 2), (CheckpointError, 3), (ResourceError, 4), (JobCancelled, 130))
"""The command line's exit code for each kind of failure (anything else: 1)."""


def exit_code_of(kind: type[BaseException]) -> int:
    """The exit code for a failure of this kind."""
    return next((code for known, code in EXIT_CODES if issubclass(kind, known)), 1)
