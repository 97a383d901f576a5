"""The errors users see, each a message that says what is wrong and how to fix it: PromptlabError, and its kinds for a
file a user gave (DataError) and for the database file (StoreError)."""


class PromptlabError(Exception):
    """An error caused by input or setup, with a message fit to show a user as is (no traceback)."""


class DataError(PromptlabError):
    """A file a user gave (a dataset, or a prompt) that cannot be used as given."""


class StoreError(PromptlabError):
    """The database file cannot be used: another process keeps it locked, or a newer promptlab wrote it."""
