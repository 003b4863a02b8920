"""Typed failures of an AsyncOS session: each names the appliance and what went wrong."""

from __future__ import annotations


class ApplianceError(Exception):
    """Base for everything that can go wrong talking to one appliance."""

    def __init__(self, appliance: str, message: str) -> None:
        super().__init__(f"{appliance}: {message}")
        self.appliance = appliance
        self.message = message


class ConnectFailed(ApplianceError):
    """TCP connect refused, unreachable or timed out."""


class AuthFailed(ApplianceError):
    """The appliance rejected the credentials."""


class KeyFileError(AuthFailed):
    """The SSH key file cannot be used (missing, encrypted without a passphrase, not a key)."""


class HostKeyRejected(ApplianceError):
    """The host key is unknown or differs from known_hosts: never trusted silently."""


class CommandTimeout(ApplianceError):
    """A command did not reach its prompt before its deadline."""


class ConnectionLost(ApplianceError):
    """The SSH session dropped while a command was running."""


class UnknownCommand(ApplianceError):
    """The appliance does not know the command (or lacks the feature key)."""


class CommandFailed(ApplianceError):
    """The appliance answered with an error string."""


class DialogueError(ApplianceError):
    """The appliance asked something we cannot answer safely (e.g. a password)."""


class UnknownQuestion(DialogueError):
    """The appliance asked a question no rule answers, and the dialogue policy says stop."""


class OutputTooLarge(ApplianceError):
    """One command sent more output than the per-command cap without reaching its prompt."""


class UpgradeFailed(ApplianceError):
    """`upgrade` printed one of AsyncOS's failure strings."""


class ParseError(ApplianceError):
    """Output did not have the shape a parser needs; `Appliance` re-raises it with its own name."""

    def __init__(self, message: str, appliance: str = "?") -> None:
        super().__init__(appliance, message)
