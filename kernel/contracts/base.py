"""What every contract shares: frozen models, bounded decoding, typed topics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from stackpulse.kernel.topics import DEVICE_RE, SITE_RE, parse_system_topic

MAX_MESSAGE_BYTES = 256 * 1024  # a zone, a seat, a change, a transition: far below this


class ContractError(ValueError):
    """A message that does not meet its contract; the message says what is wrong."""


class Contract(BaseModel):
    """A message between components: the producer dumps it, the consumer validates it.

    Consumers ignore fields they do not know, so a producer may add fields (extend only,
    as protocol.md asks); what is declared is checked.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    def dump(self) -> bytes:
        """The JSON the producer publishes."""
        return self.model_dump_json().encode()

    @classmethod
    def load(cls, raw: bytes | str, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Self:
        """Validate a received payload; ContractError (one line) for anything else."""
        if len(raw) > max_bytes:
            raise ContractError(f"{cls.__name__}: {len(raw)} bytes is over {max_bytes}")
        try:
            return cls.model_validate_json(raw)
        except ValidationError as err:
            raise ContractError(f"{cls.__name__}: {describe(err)}") from None


def describe(err: ValidationError) -> str:
    """The first problems of a validation error, on one line."""
    parts = []
    for e in err.errors(include_url=False)[:3]:
        loc = ".".join(str(x) for x in e["loc"]) or "payload"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


M = TypeVar("M", bound=Contract)


@dataclass(frozen=True, slots=True)
class StateTopic(Generic[M]):
    """`{root}/{site}/_state/{service}/{what}/{ident}`, carrying `model`.

    The topic's site and ident are the truth; a body that names another is refused.
    """

    service: str
    what: str
    model: type[M]
    retained: bool = True
    max_bytes: int = MAX_MESSAGE_BYTES

    def topic(self, root: str, site: str, ident: str) -> str:
        return f"{root}/{site}/_state/{self.service}/{self.what}/{ident}"

    def filter(self, root: str, site: str = "+") -> str:
        return f"{root}/{site}/_state/{self.service}/{self.what}/+"

    def match(self, topic: str, root: str) -> tuple[str, str] | None:
        """(site, ident) when `topic` is one of these, with both levels well formed."""
        parts = parse_system_topic(topic, root, "_state")
        if parts is None or len(parts) != 4 or parts[1:3] != [self.service, self.what]:
            return None
        site, ident = parts[0], parts[3]
        if not SITE_RE.fullmatch(site) or not DEVICE_RE.fullmatch(ident):
            return None
        return site, ident

    def load(self, raw: bytes | str) -> M:
        return self.model.load(raw, max_bytes=self.max_bytes)
