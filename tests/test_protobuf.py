"""The bounded protobuf reader (gatekeeper/core/protobuf.py) and Snapchat's protobuf sign-in
rule: values found by path of field numbers, every malformed or oversized body refused."""

from __future__ import annotations

import base64

import pytest
from catalog_samples import (
    CONFIG_DIR,
    filled_services_text,
    grpc_web,
    protobuf_field,
    snapchat_login,
    snapchat_password,
)

from gatekeeper.config.loader import load_policy
from gatekeeper.core.logins import LoginResult, check_login, login_rule, make_target
from gatekeeper.core.protobuf import (
    MAX_FIELDS,
    ProtobufError,
    TooManyFieldsError,
    path_name,
    read_message,
)

GRPC = "application/grpc-web+proto"
ALICE = "alice@clinic.example"


def _varint_field(number: int, value: int) -> bytes:
    out, key = bytearray(), number << 3
    for part in (key, value):
        while True:
            byte, part = part & 0x7F, part >> 7
            out.append(byte | (0x80 if part else 0))
            if not part:
                break
    return bytes(out)


def test_values_are_found_by_path_of_field_numbers() -> None:
    body = grpc_web(protobuf_field(1, protobuf_field(2, "attestation")),
                    protobuf_field(2, "clinic.social"),
                    protobuf_field(5, protobuf_field(2, protobuf_field(1, "hunter2"))))
    form = read_message(GRPC, body, [(2,), (3,), (5, None, 1), (1, 2)])
    assert form.values("2") == ["clinic.social"]
    assert form.values("3") == []
    assert form.values("5.*.1") == ["hunter2"]
    assert form.values("1.2") == ["attestation"]
    assert path_name((5, None, 1)) == "5.*.1"


def test_every_occurrence_of_a_field_is_kept() -> None:
    """Protobuf lets a field repeat (the server keeps the last): every value is checked."""
    body = grpc_web(protobuf_field(2, ALICE), protobuf_field(2, "me@gmail.com"))
    assert read_message(GRPC, body, [(2,)]).values("2") == [ALICE, "me@gmail.com"]


def test_a_wildcard_skips_fields_that_are_not_messages() -> None:
    answer = _varint_field(7, 3) + protobuf_field(9, b"\xff\xfe") \
        + protobuf_field(2, protobuf_field(1, "hunter2"))
    body = grpc_web(protobuf_field(5, answer))
    assert read_message(GRPC, body, [(5, None, 1)]).values("5.*.1") == ["hunter2"]


def test_a_value_that_is_not_text_is_unreadable() -> None:
    body = grpc_web(protobuf_field(2, b"\xff\xfe"), _varint_field(3, 7))
    form = read_message(GRPC, body, [(2,), (3,)])
    assert form.values("2") == [None] and form.values("3") == [None]


def test_unframed_and_text_encodings_are_read() -> None:
    message = protobuf_field(2, ALICE)
    assert read_message("application/x-protobuf", message, [(2,)]).values("2") == [ALICE]
    text = base64.b64encode(grpc_web(message))
    assert read_message("application/grpc-web-text", text, [(2,)]).values("2") == [ALICE]


@pytest.mark.parametrize(("content_type", "body"), [
    pytest.param(GRPC, b"\x00\x00\x00", id="short-frame"),
    pytest.param(GRPC, b"\x01" + grpc_web(protobuf_field(2, ALICE))[1:], id="compressed"),
    pytest.param(GRPC, grpc_web(protobuf_field(2, ALICE)) + b"\x80\x00\x00\x00\x00",
                 id="second-frame"),
    pytest.param(GRPC, b"\x00\x00\x00\x00\x09" + protobuf_field(2, ALICE)[:9], id="length"),
    pytest.param(GRPC, grpc_web(b"\x12\x7f" + ALICE.encode()), id="past-the-end"),
    pytest.param(GRPC, grpc_web(b"\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
                 id="long-varint"),
    pytest.param(GRPC, grpc_web(b"\x12"), id="truncated-varint"),
    pytest.param(GRPC, grpc_web(b"\x13\x14"), id="group"),
    pytest.param(GRPC, grpc_web(b"\x02\x01a"), id="field-zero"),
    pytest.param("application/json", b'{"username": "a"}', id="not-protobuf"),
    pytest.param("application/grpc-web-text", b"not base64!", id="bad-base64"),
])
def test_malformed_bodies_are_refused(content_type: str, body: bytes) -> None:
    with pytest.raises(ProtobufError):
        read_message(content_type, body, [(2,)])


def test_the_values_read_are_bounded_by_the_message() -> None:
    """Paths that overlap read the same bytes twice: more than the message is refused."""
    body = grpc_web(protobuf_field(2, "x" * 1000))
    assert read_message(GRPC, body, [(2,)]).values("2") == ["x" * 1000]
    with pytest.raises(ProtobufError):
        read_message(GRPC, body, [(2,), (None,)])


def test_a_message_on_the_path_that_does_not_parse_is_refused() -> None:
    body = grpc_web(protobuf_field(5, b"\x12\x7f"))
    with pytest.raises(ProtobufError):
        read_message(GRPC, body, [(5, 1)])


def test_the_fields_read_per_body_are_bounded() -> None:
    """Many tiny fields (two bytes each) cost the reader more than their size suggests."""
    body = grpc_web(_varint_field(9, 0) * (MAX_FIELDS + 1))
    with pytest.raises(TooManyFieldsError):
        read_message(GRPC, body, [(2,)])
    nested = grpc_web(protobuf_field(5, _varint_field(9, 0) * MAX_FIELDS))
    with pytest.raises(TooManyFieldsError):  # under a wildcard too: never skipped
        read_message(GRPC, nested, [(5, None, 1)])


# --- Snapchat's WebLogin, with the shipped rule -----------------------------------------------

@pytest.fixture(scope="module")
def snapchat():
    policy = load_policy(CONFIG_DIR, overrides={"services.yaml": filled_services_text()})
    service = policy.services["snapchat"]
    target = make_target("POST", ["accounts.snapchat.com"],
                         "/snapchat.janus.api.WebLoginService/WebLogin")
    rule = login_rule(service, target)
    assert rule is not None and rule.protobuf is not None
    return rule


def _check(rule, body: bytes, continuing: bool = False) -> LoginResult:
    fields = (*rule.protobuf.identifiers, *rule.protobuf.passwords)
    form = read_message(GRPC, body, fields)
    return check_login(rule, frozenset({ALICE}), "alice", {}, form, continuing).result


def test_snapchat_account_step_is_checked(snapchat) -> None:
    assert _check(snapchat, snapchat_login(ALICE)) is LoginResult.COMPANY
    assert _check(snapchat, snapchat_login("Alice@Clinic.Example")) is LoginResult.COMPANY
    assert _check(snapchat, snapchat_login("me@gmail.com")) is LoginResult.PERSONAL
    assert _check(snapchat, snapchat_login("snapper99")) is LoginResult.PERSONAL


def test_snapchat_password_step_needs_a_checked_account_step(snapchat) -> None:
    assert _check(snapchat, snapchat_password(), continuing=True) is LoginResult.COMPANY
    assert _check(snapchat, snapchat_password()) is LoginResult.UNVERIFIABLE
    # the password step cannot carry another account along
    both = grpc_web(protobuf_field(2, "me@gmail.com"),
                    protobuf_field(5, protobuf_field(2, protobuf_field(1, "x"))))
    assert _check(snapchat, both, continuing=True) is LoginResult.PERSONAL


def test_snapchat_unreadable_account_is_unverifiable(snapchat) -> None:
    body = grpc_web(protobuf_field(2, b"\xff\xfe"))
    assert _check(snapchat, body, continuing=True) is LoginResult.UNVERIFIABLE
