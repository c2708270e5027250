"""The one exception type a user sees.

Anything raised as :class:`FedloraError` is a problem with the user's input or
environment, worded as what was wrong (with the value) and what to do. The CLI prints
it without a traceback and exits non-zero; anything else is a bug and keeps its traceback.
"""


class FedloraError(Exception):
    """A problem the user can act on."""
