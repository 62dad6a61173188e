"""Bounces (RFC 3464 delivery status notifications and the non-standard ones MTAs still send) and complaints
(ARF feedback reports, RFC 5965).

Detection and the bounced addresses come from flufl.bounce, GNU Mailman's detectors: its RFC 3464 parser first,
then heuristics for Exim, Postfix, qmail, Exchange, Yahoo and others. flufl.bounce says which addresses failed
permanently and which temporarily; the severity here follows the DSN's per-recipient `Status:` where one is
given (5.x.x hard, 4.x.x soft — a message given up on after days of 4.4.7 is soft), and flufl.bounce's
permanent/temporary split where not. The heuristic detectors only run on messages that look like bounces
(null sender, MAILER-DAEMON or postmaster, a delivery-failure subject): readers' replies share this mailbox,
and a heuristic must never suppress a reader for quoting an error message.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser
from email.utils import parseaddr

from flufl.bounce import all_failures

from flows.collect.message import addresses, embedded_headers, header, part_text, subparts

logger = logging.getLogger(__name__)

ENHANCED_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
BOUNCE_SENDERS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")
BOUNCE_SUBJECTS = re.compile(
    r"undeliver|undelivered|delivery (status notification|failure|has failed)|failure notice|returned mail|"
    r"mail delivery (failed|failure|system)|delivery problem|could not be delivered|nondeliverable|"
    r"系统退信|退信|投递失败|未能送达",
    re.IGNORECASE,
)
NOT_A_COMPLAINT = {"not-spam"}


@dataclass(frozen=True)
class BouncedAddress:
    email: str
    severity: str  # hard | soft
    status: str = ""  # the enhanced status code, e.g. 5.1.1
    diagnostic: str = ""


@dataclass(frozen=True)
class Bounce:
    addresses: tuple[BouncedAddress, ...]
    returned_message_id: str = ""


@dataclass(frozen=True)
class Complaint:
    feedback_type: str
    candidates: tuple[str, ...]  # addresses named by the report, most trustworthy first
    returned_message_id: str = ""
    returned_unsubscribe: str = ""  # the List-Unsubscribe header of the returned message (a signed token)
    user_agent: str = ""
    suppresses: bool = True


@dataclass
class _StatusBlock:
    action: str = ""
    status: str = ""
    diagnostic: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def is_report(message: Message, report_type: str) -> bool:
    return message.get_content_type() == "multipart/report" and (
        str(message.get_param("report-type", "", header="content-type")).lower() == report_type
    )


def looks_like_bounce(message: Message) -> bool:
    if is_report(message, "delivery-status") or subparts(message, "message/delivery-status"):
        return True
    return_path = header(message, "Return-Path")
    if return_path.replace(" ", "") == "<>":
        return True
    _name, address = parseaddr(header(message, "From"))
    if address.split("@", 1)[0].lower() in BOUNCE_SENDERS:
        return True
    return bool(BOUNCE_SUBJECTS.search(header(message, "Subject")))


def _status_blocks(message: Message) -> dict[str, _StatusBlock]:
    """address → its per-recipient fields, from every message/delivery-status part."""
    blocks: dict[str, _StatusBlock] = {}
    for part in subparts(message, "message/delivery-status"):
        payload = part.get_payload()
        groups: list[Message] = []
        if isinstance(payload, list):
            groups = [p for p in payload if isinstance(p, Message)]
        elif isinstance(payload, str):
            groups = [HeaderParser().parsestr(chunk) for chunk in re.split(r"\r?\n\r?\n", payload) if chunk.strip()]
        for group in groups:
            recipient = group.get("Original-Recipient") or group.get("Final-Recipient") or ""
            address = _address_of(str(recipient))
            if not address:
                continue
            status_match = ENHANCED_STATUS.search(str(group.get("Status", "")))
            block = _StatusBlock(
                action=str(group.get("Action", "")).strip().lower(),
                status=".".join(status_match.groups()) if status_match else "",
                diagnostic=" ".join(str(group.get("Diagnostic-Code", "")).split())[:500],
            )
            blocks[address] = block
            final = _address_of(str(group.get("Final-Recipient") or ""))
            if final and final not in blocks:
                blocks[final] = block
    return blocks


def _address_of(field_value: str) -> str:
    """`rfc822; user@example.org` → user@example.org."""
    value = field_value.split(";", 1)[-1].strip().strip("<>").strip()
    return value.lower() if "@" in value else ""


def _first_code(message: Message) -> str:
    for part in message.walk():
        if part.get_content_maintype() == "text":
            match = ENHANCED_STATUS.search(part_text(part))
            if match:
                return ".".join(match.groups())
    return ""


def parse_bounce(message: Message) -> Bounce | None:
    """The addresses a bounce reports, with their severity; None when it is not a bounce flufl.bounce can read."""
    if not looks_like_bounce(message):
        return None
    temporary, permanent = all_failures(message)
    blocks = _status_blocks(message)
    fallback_code = "" if blocks else _first_code(message)
    found: dict[str, BouncedAddress] = {}
    for raw, permanent_failure in [(a, False) for a in temporary] + [(a, True) for a in permanent]:
        address = raw.decode("ascii", errors="replace").strip().lower()
        if "@" not in address:
            continue
        block = blocks.get(address)
        code = block.status if block else fallback_code
        hard = code.startswith("5") if code else permanent_failure
        severity = "hard" if hard else "soft"
        if code.startswith("2"):
            continue  # a delivery report of success ("Action: relayed/delivered") suppresses nobody
        diagnostic = block.diagnostic if block else ""
        previous = found.get(address)
        if previous is None or (previous.severity == "soft" and severity == "hard"):
            found[address] = BouncedAddress(address, severity, code, diagnostic)
    if not found:
        return None
    returned = embedded_headers(message)
    returned_id = header(returned, "Message-ID") if returned is not None else ""
    return Bounce(tuple(found.values()), returned_id)


def parse_complaint(message: Message) -> Complaint | None:
    """An ARF feedback report (multipart/report; report-type=feedback-report) or None."""
    if not is_report(message, "feedback-report"):
        return None
    fields = _feedback_fields(message)
    feedback_type = fields.get("feedback-type", "").strip().lower() or "abuse"
    returned = embedded_headers(message)
    candidates: list[str] = []
    for name in ("original-rcpt-to", "removal-recipient"):
        address = _address_of(fields.get(name, ""))
        if address and address not in candidates:
            candidates.append(address)
    if returned is not None:
        for address in addresses(returned, "To"):
            if address not in candidates:
                candidates.append(address)
    return Complaint(
        feedback_type=feedback_type,
        candidates=tuple(candidates),
        returned_message_id=header(returned, "Message-ID") if returned is not None else "",
        returned_unsubscribe=header(returned, "List-Unsubscribe") if returned is not None else "",
        user_agent=fields.get("user-agent", ""),
        suppresses=feedback_type not in NOT_A_COMPLAINT,
    )


def _feedback_fields(message: Message) -> dict[str, str]:
    for part in subparts(message, "message/feedback-report"):
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            block = payload[0]
        else:
            block = HeaderParser().parsestr(part_text(part).lstrip())
        return {key.lower(): " ".join(str(value).split()) for key, value in block.items()}
    return {}
