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
