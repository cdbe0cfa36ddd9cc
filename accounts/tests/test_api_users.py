"""HTTP contract of wallet login and the user endpoints: /v1/users/challenge, …/login, …/logout, …/me,
…/{id}/balance, …/me/api-keys, …/me/api-keys/{id} and …/me/ledger, with the whole authentication matrix."""

import base64
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import F
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from rest_framework.test import APIClient

from accounts import ledger
from accounts.models import ApiKey, ApiKeyRole, LoginChallenge, User, UserSession
from accounts.services import api_key_issue, wallet_user_for
from aitbc_site.testing import assert_api_error
from conftest import api_with_key, register_miner, submit_job

CHALLENGE = "/v1/users/challenge"
LOGIN = "/v1/users/login"
LOGOUT = "/v1/users/logout"
ME = "/v1/users/me"
API_KEYS = "/v1/users/me/api-keys"
LEDGER = "/v1/users/me/ledger"
SOME_ID = str(uuid.uuid4())
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

SESSION_ONLY_ENDPOINTS = [
    ("post", LOGOUT),
    ("get", ME),
    ("get", API_KEYS),
    ("post", API_KEYS),
    ("delete", f"{API_KEYS}/{SOME_ID}"),
    ("get", LEDGER),
]
USER_FIELDS = {"id", "address", "created_at", "last_login_at", "balance"}
BALANCE_FIELDS = {"user_id", "currency", "available", "held"}


@dataclass(frozen=True)
class Wallet:
    """A browser wallet in the test: a secp256k1 key and the spellings of its address."""

    account: LocalAccount

    @property
    def hex(self) -> str:
        return self.account.address[2:].lower()

    @property
    def canonical(self) -> str:
        return "ait1" + self.hex

    @property
    def checksummed(self) -> str:
        return to_checksum_address("0x" + self.hex)

    def sign(self, message: str) -> str:
        signed = Account.sign_message(encode_defunct(text=message), private_key=self.account.key)
        return "0x" + bytes(signed.signature).hex()


def wallet(label: str) -> Wallet:
    return Wallet(Account.from_key(hashlib.sha256(label.encode()).digest()))


ALICE = wallet("alice")
BOB = wallet("bob")


def with_one_letter_case_flipped(address: str) -> str:
    position = next(index for index, char in enumerate(address) if index > 1 and char.isalpha())
    return address[:position] + address[position].swapcase() + address[position + 1 :]


BAD_CHECKSUM = with_one_letter_case_flipped(ALICE.checksummed)


def call(api: APIClient, method: str, path: str) -> Any:
    if method == "get":
        return api.get(path)
    return getattr(api, method)(path, {}, format="json")


def endpoint_id(endpoint: tuple[str, str]) -> str:
    method, path = endpoint
    return f"{method.upper()} {path.replace(SOME_ID, '{id}')}"


def ask_challenge(api: APIClient, address: str) -> dict[str, Any]:
    response = api.post(CHALLENGE, {"address": address}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def attempt_login(api: APIClient, *, address: str, nonce: str, signature: str) -> Any:
    return api.post(LOGIN, {"address": address, "nonce": nonce, "signature": signature}, format="json")


def log_in(api: APIClient, signer: Wallet) -> dict[str, Any]:
    challenge = ask_challenge(api, signer.canonical)
    response = attempt_login(
        api, address=signer.canonical, nonce=challenge["nonce"], signature=signer.sign(challenge["message"])
    )
    assert response.status_code == 200, response.content
    return response.json()


def session_api(token: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_X_SESSION_TOKEN=token)
    return api


def logged_in(signer: Wallet) -> APIClient:
    return session_api(log_in(APIClient(), signer)["token"])


def user_of(signer: Wallet) -> User:
    return User.objects.get(wallet_address=signer.canonical)


def with_recovery_byte(signature: str, v: int) -> str:
    return signature[:-2] + f"{v:02x}"


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- POST /v1/users/challenge ----------------------------------------------------------------------------------


def test_a_challenge_is_a_sign_in_with_ethereum_message_for_the_wallet(db: None, settings: Any) -> None:
    settings.SITE_DOMAIN = "coordinator.aitbc.example"
    settings.SITE_URI = "https://coordinator.aitbc.example"
    settings.SIWE_CHAIN_ID = 1
    before = timezone.now().replace(microsecond=0)

    response = APIClient().post(CHALLENGE, {"address": ALICE.canonical}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"address", "nonce", "message", "expires_at"}
    assert body["address"] == ALICE.canonical
    lines = body["message"].split("\n")
    assert lines[0] == "coordinator.aitbc.example wants you to sign in with your Ethereum account:"
    assert lines[1] == ALICE.checksummed
    assert lines[2] == ""
    assert lines[3]  # the statement
    assert lines[4] == ""
    fields = dict(line.split(": ", 1) for line in lines[5:])
    assert list(fields) == ["URI", "Version", "Chain ID", "Nonce", "Issued At", "Expiration Time"]
    assert fields["URI"] == "https://coordinator.aitbc.example"
    assert fields["Version"] == "1"
    assert fields["Chain ID"] == "1"
    assert fields["Nonce"] == body["nonce"]
    # EIP-4361: the nonce is at least 8 alphanumeric characters.
    assert len(body["nonce"]) >= 8 and body["nonce"].isalnum()
    issued_at, expires_at = parse_iso(fields["Issued At"]), parse_iso(fields["Expiration Time"])
    assert before <= issued_at <= timezone.now()
    assert expires_at - issued_at == timedelta(minutes=5)
    assert parse_iso(body["expires_at"]) == expires_at


def test_the_challenge_follows_the_configured_chain_id(db: None, settings: Any) -> None:
    settings.SIWE_CHAIN_ID = 8453

    message = ask_challenge(APIClient(), ALICE.canonical)["message"]

    assert "\nChain ID: 8453\n" in message


def test_every_challenge_has_a_new_nonce(db: None) -> None:
    api = APIClient()

    nonces = {ask_challenge(api, ALICE.canonical)["nonce"] for _ in range(5)}

    assert len(nonces) == 5


@pytest.mark.parametrize(
    "spelling",
    [
        lambda w: "0x" + w.hex,
        lambda w: "0x" + w.hex.upper(),
        lambda w: w.checksummed,
        lambda w: "ait1" + w.hex,
        lambda w: "aitbc1" + w.hex,
        lambda w: "aitbc1" + w.hex.upper(),
    ],
    ids=["0x lowercase", "0x uppercase", "0x EIP-55", "ait1", "aitbc1", "aitbc1 uppercase"],
)
def test_every_spelling_of_the_address_gets_a_challenge_for_the_canonical_wallet(db: None, spelling: Any) -> None:
    body = ask_challenge(APIClient(), spelling(ALICE))

    assert body["address"] == ALICE.canonical
    assert body["message"].split("\n")[1] == ALICE.checksummed


@pytest.mark.parametrize(
    "address",
    [
        "0x" + "ab" * 19,
        "0x" + "ab" * 21,
        "ait1" + "g" * 40,
        "bc1" + "ab" * 20,
        "ab" * 20,
        BAD_CHECKSUM,
    ],
    ids=["too short", "too long", "not hex", "other prefix", "no prefix", "bad EIP-55 checksum"],
)
def test_a_challenge_for_anything_but_a_wallet_address_is_invalid_address(db: None, address: str) -> None:
    response = APIClient().post(CHALLENGE, {"address": address}, format="json")

    assert_api_error(response, status=400, code="INVALID_ADDRESS")
    assert not LoginChallenge.objects.exists()


def test_the_bad_checksum_spelling_is_mixed_case_and_not_the_eip55_one() -> None:
    # Guards the case above: only a mixed-case 0x spelling is checked, so it must be mixed case and differ.
    assert BAD_CHECKSUM != ALICE.checksummed
    assert BAD_CHECKSUM[2:] not in (ALICE.hex, ALICE.hex.upper())


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "address"), ({"address": [ALICE.canonical]}, "address"), ({"address": ALICE.canonical, "extra": 1}, "extra")],
    ids=["missing address", "address not a string", "unknown field"],
)
def test_a_malformed_challenge_request_is_a_validation_error(db: None, body: dict[str, Any], field: str) -> None:
    error = assert_api_error(APIClient().post(CHALLENGE, body, format="json"), status=400, code="VALIDATION_ERROR")

    assert field in error["details"]


# --- POST /v1/users/login --------------------------------------------------------------------------------------


def test_the_first_login_registers_the_wallet_and_answers_a_session(db: None, settings: Any) -> None:
    settings.SESSION_TTL_SECONDS = 3600
    before = timezone.now()

    body = log_in(APIClient(), ALICE)

    assert set(body) == {"token", "expires_at", "created", "user"}
    assert body["created"] is True
    user = user_of(ALICE)
    assert set(body["user"]) == USER_FIELDS
    assert body["user"]["id"] == str(user.pk)
    assert body["user"]["address"] == ALICE.canonical
    assert body["user"]["last_login_at"] is not None
    assert body["user"]["balance"] == {
        "user_id": str(user.pk), "currency": "AITBC", "available": "0.00000000", "held": "0.00000000",
    }
    session = UserSession.objects.get(user=user)
    assert parse_iso(body["expires_at"]) == session.expires_at
    assert timedelta(seconds=3600) <= session.expires_at - before <= timedelta(seconds=3601)


def test_a_later_login_of_the_same_wallet_is_the_same_user_not_created(db: None) -> None:
    first = log_in(APIClient(), ALICE)

    second = log_in(APIClient(), ALICE)

    assert second["created"] is False
    assert second["user"]["id"] == first["user"]["id"]
    assert second["token"] != first["token"]
    assert User.objects.filter(wallet_address=ALICE.canonical).count() == 1
    assert UserSession.objects.filter(user=user_of(ALICE)).count() == 2


def test_the_session_token_has_at_least_256_random_bits_and_only_its_hash_is_stored(db: None) -> None:
    tokens = [log_in(APIClient(), ALICE)["token"] for _ in range(3)]

    for token in tokens:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert len(raw) * 8 >= 256
    assert len(set(tokens)) == 3
    stored = list(UserSession.objects.values_list("token_hash", flat=True))
    assert sorted(stored) == sorted(hashlib.sha256(token.encode()).hexdigest() for token in tokens)
    for token in tokens:
        assert not any(token in value for value in stored)


def test_the_session_token_is_sent_as_x_session_token(db: None) -> None:
    token = log_in(APIClient(), ALICE)["token"]

    response = APIClient().get(ME, headers={"X-Session-Token": token})

    assert response.status_code == 200, response.content
    assert response.json()["address"] == ALICE.canonical


@pytest.mark.parametrize(
    ("challenge_spelling", "login_spelling"),
    [
        (lambda w: w.checksummed, lambda w: "ait1" + w.hex),
        (lambda w: "aitbc1" + w.hex, lambda w: w.checksummed),
        (lambda w: "0x" + w.hex, lambda w: "aitbc1" + w.hex.upper()),
    ],
    ids=["EIP-55 then ait1", "aitbc1 then EIP-55", "0x lowercase then aitbc1 uppercase"],
)
def test_all_spellings_of_the_address_log_in_to_the_same_wallet(
    db: None, challenge_spelling: Any, login_spelling: Any
) -> None:
    api = APIClient()
    challenge = ask_challenge(api, challenge_spelling(ALICE))

    response = attempt_login(
        api, address=login_spelling(ALICE), nonce=challenge["nonce"], signature=ALICE.sign(challenge["message"])
    )

    assert response.status_code == 200, response.content
    assert response.json()["user"]["address"] == ALICE.canonical


@pytest.mark.parametrize("v", [0, 1, 27, 28])
def test_the_recovery_byte_may_be_0_1_27_or_28(db: None, settings: Any, v: int) -> None:
    settings.RATE_LIMIT_LOGIN = "1000/m"
    api = APIClient()
    recovery_id = v - 27 if v >= 27 else v  # 0 and 27 name one recovery id, 1 and 28 the other
    # Which recovery id a signature gets depends on the message, so on the nonce: ask until this one comes up.
    for _ in range(64):
        challenge = ask_challenge(api, ALICE.canonical)
        signature = ALICE.sign(challenge["message"])
        if int(signature[-2:], 16) - 27 == recovery_id:
            break
    else:
        pytest.fail("no signature with the wanted recovery id in 64 tries")

    response = attempt_login(
        api, address=ALICE.canonical, nonce=challenge["nonce"], signature=with_recovery_byte(signature, v)
    )

    assert response.status_code == 200, response.content


def test_a_signature_by_another_key_is_invalid_signature(db: None) -> None:
    api = APIClient()
    challenge = ask_challenge(api, ALICE.canonical)

    response = attempt_login(
        api, address=ALICE.canonical, nonce=challenge["nonce"], signature=BOB.sign(challenge["message"])
    )

    assert_api_error(response, status=401, code="INVALID_SIGNATURE")
    assert not User.objects.filter(wallet_address__in=[ALICE.canonical, BOB.canonical]).exists()
    assert not UserSession.objects.exists()


def test_a_signature_of_another_message_is_invalid_signature(db: None) -> None:
    api = APIClient()
    challenge = ask_challenge(api, ALICE.canonical)
    tampered = challenge["message"].replace("Version: 1", "Version: 2")

    response = attempt_login(api, address=ALICE.canonical, nonce=challenge["nonce"], signature=ALICE.sign(tampered))

    assert_api_error(response, status=401, code="INVALID_SIGNATURE")


def test_the_wrong_recovery_byte_is_invalid_signature(db: None) -> None:
    api = APIClient()
    challenge = ask_challenge(api, ALICE.canonical)
    signature = ALICE.sign(challenge["message"])
    flipped = 55 - int(signature[-2:], 16)  # 27 ↔ 28: recovers some other key

    response = attempt_login(
        api, address=ALICE.canonical, nonce=challenge["nonce"], signature=with_recovery_byte(signature, flipped)
    )

    assert_api_error(response, status=401, code="INVALID_SIGNATURE")


@pytest.mark.parametrize(
    "r_s",
    [
        (0, 0),
        (5, 1),  # r in range but no point on the curve has x = 5: nothing to recover
        (SECP256K1_ORDER, 1),  # r out of range
    ],
    ids=["all zero", "no curve point", "r not below the group order"],
)
def test_a_well_formed_signature_that_recovers_no_key_is_invalid_signature(db: None, r_s: tuple[int, int]) -> None:
    api = APIClient()
    challenge = ask_challenge(api, ALICE.canonical)
    r, s = r_s
    signature = "0x" + r.to_bytes(32, "big").hex() + s.to_bytes(32, "big").hex() + "1b"

    response = attempt_login(api, address=ALICE.canonical, nonce=challenge["nonce"], signature=signature)

    assert_api_error(response, status=401, code="INVALID_SIGNATURE")


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "0x",
        "0x" + "ab" * 64,
        "0x" + "ab" * 66,
        "ab" * 65,
        "0x" + "zz" * 65,
        "0x" + "ab" * 64 + "02",
        "0x" + "ab" * 64 + "1d",
        "0x" + "ab" * 64 + "ff",
    ],
    ids=["empty", "0x only", "64 bytes", "66 bytes", "no 0x", "not hex", "v=2", "v=29", "v=255"],
)
def test_a_malformed_signature_is_a_validation_error_and_leaves_the_nonce_unused(db: None, signature: str) -> None:
    api = APIClient()
    challenge = ask_challenge(api, ALICE.canonical)

    response = attempt_login(api, address=ALICE.canonical, nonce=challenge["nonce"], signature=signature)

    error = assert_api_error(response, status=400, code="VALIDATION_ERROR")
    assert "signature" in error["details"]
    assert LoginChallenge.objects.get(nonce=challenge["nonce"]).used_at is None


def test_a_login_for_an_invalid_address_is_invalid_address(db: None) -> None:
    api = APIClient()
    challenge = ask_challenge(api, ALICE.canonical)

    response = attempt_login(
        api, address="0x" + ALICE.hex[:-2], nonce=challenge["nonce"], signature=ALICE.sign(challenge["message"])
    )

    assert_api_error(response, status=400, code="INVALID_ADDRESS")


@pytest.mark.parametrize(
    ("missing", "extra"), [("nonce", {}), ("signature", {}), ("address", {}), (None, {"chain_id": 1})],
    ids=["no nonce", "no signature", "no address", "unknown field"],
)
def test_an_incomplete_login_request_is_a_validation_error(
    db: None, missing: str | None, extra: dict[str, Any]
) -> None:
    api = APIClient()
    challenge = ask_challenge(api, ALICE.canonical)
    body = {
        "address": ALICE.canonical, "nonce": challenge["nonce"], "signature": ALICE.sign(challenge["message"]), **extra,
    }
    body.pop(missing or "", None)

    error = assert_api_error(api.post(LOGIN, body, format="json"), status=400, code="VALIDATION_ERROR")

    assert (missing or "chain_id") in error["details"]


# --- nonces ----------------------------------------------------------------------------------------------------


def test_a_nonce_logs_in_once(db: None) -> None:
    api = APIClient()
    challenge = ask_challenge(api, ALICE.canonical)
    signature = ALICE.sign(challenge["message"])
    assert attempt_login(api, address=ALICE.canonical, nonce=challenge["nonce"], signature=signature).status_code == 200

    again = attempt_login(api, address=ALICE.canonical, nonce=challenge["nonce"], signature=signature)

    assert_api_error(again, status=401, code="INVALID_NONCE")
    assert UserSession.objects.count() == 1


def test_a_wrong_attempt_uses_the_nonce_up(db: None) -> None:
    api = APIClient()
    challenge = ask_challenge(api, ALICE.canonical)
    wrong = attempt_login(
        api, address=ALICE.canonical, nonce=challenge["nonce"], signature=BOB.sign(challenge["message"])
    )
    assert_api_error(wrong, status=401, code="INVALID_SIGNATURE")

    right = attempt_login(
        api, address=ALICE.canonical, nonce=challenge["nonce"], signature=ALICE.sign(challenge["message"])
    )

    assert_api_error(right, status=401, code="INVALID_NONCE")
    assert not UserSession.objects.exists()


def test_a_nonce_works_only_for_its_address_and_any_attempt_with_another_uses_it_up(db: None) -> None:
    api = APIClient()
    challenge = ask_challenge(api, ALICE.canonical)

    as_bob = attempt_login(
        api, address=BOB.canonical, nonce=challenge["nonce"], signature=BOB.sign(challenge["message"])
    )

    assert_api_error(as_bob, status=401, code="INVALID_NONCE")
    as_alice = attempt_login(
        api, address=ALICE.canonical, nonce=challenge["nonce"], signature=ALICE.sign(challenge["message"])
    )
    assert_api_error(as_alice, status=401, code="INVALID_NONCE")
    assert not User.objects.filter(wallet_address__in=[ALICE.canonical, BOB.canonical]).exists()


def test_an_unknown_nonce_is_invalid_nonce(db: None) -> None:
    api = APIClient()
    challenge = ask_challenge(api, ALICE.canonical)

    response = attempt_login(api, address=ALICE.canonical, nonce="0" * 32, signature=ALICE.sign(challenge["message"]))

    assert_api_error(response, status=401, code="INVALID_NONCE")


def test_a_nonce_expires_five_minutes_after_its_challenge(db: None) -> None:
    api = APIClient()
    challenge = ask_challenge(api, ALICE.canonical)
    stored = LoginChallenge.objects.get(nonce=challenge["nonce"])
    assert stored.expires_at - stored.created_at == timedelta(minutes=5)
    # Five minutes and a second pass: the stored times move back as the clock would move forward.
    LoginChallenge.objects.filter(pk=stored.pk).update(
        created_at=F("created_at") - timedelta(minutes=5, seconds=1),
        expires_at=F("expires_at") - timedelta(minutes=5, seconds=1),
    )

    response = attempt_login(
        api, address=ALICE.canonical, nonce=challenge["nonce"], signature=ALICE.sign(challenge["message"])
    )

    assert_api_error(response, status=401, code="INVALID_NONCE")


def test_a_nonce_still_works_just_before_it_expires(db: None) -> None:
    api = APIClient()
    challenge = ask_challenge(api, ALICE.canonical)
    LoginChallenge.objects.filter(nonce=challenge["nonce"]).update(
        created_at=F("created_at") - timedelta(minutes=4, seconds=50),
        expires_at=F("expires_at") - timedelta(minutes=4, seconds=50),
    )

    response = attempt_login(
        api, address=ALICE.canonical, nonce=challenge["nonce"], signature=ALICE.sign(challenge["message"])
    )

    assert response.status_code == 200, response.content


# --- POST /v1/users/logout -------------------------------------------------------------------------------------


def test_logout_ends_the_session_and_its_token_is_then_invalid_session(db: None) -> None:
    api = logged_in(ALICE)

    response = api.post(LOGOUT)

    assert response.status_code == 204
    assert UserSession.objects.get(user=user_of(ALICE)).revoked_at is not None
    assert_api_error(api.get(ME), status=401, code="INVALID_SESSION")
    assert_api_error(api.post(LOGOUT), status=401, code="INVALID_SESSION")


def test_logout_ends_only_that_session(db: None) -> None:
    first, second = logged_in(ALICE), logged_in(ALICE)

    assert first.post(LOGOUT).status_code == 204

    assert second.get(ME).status_code == 200


# --- GET /v1/users/me ------------------------------------------------------------------------------------------


def test_me_is_the_logged_in_user_with_their_balance(db: None) -> None:
    api = logged_in(ALICE)
    user = user_of(ALICE)
    ledger.deposit(user_id=user.pk, amount=Decimal("12.5"), reference="deposit:me", memo="bought")

    response = api.get(ME)

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == USER_FIELDS
    assert body["id"] == str(user.pk)
    assert body["address"] == ALICE.canonical
    assert parse_iso(body["created_at"]) == user.date_joined
    assert parse_iso(body["last_login_at"]) == user.last_login
    assert body["balance"] == {
        "user_id": str(user.pk), "currency": "AITBC", "available": "12.50000000", "held": "0.00000000",
    }


# --- GET /v1/users/{id}/balance --------------------------------------------------------------------------------


def balance_path(user_id: object) -> str:
    return f"/v1/users/{user_id}/balance"


def test_a_user_reads_their_own_balance_with_8_places(db: None) -> None:
    api = logged_in(ALICE)
    user = user_of(ALICE)
    ledger.deposit(user_id=user.pk, amount=Decimal("3.00000001"), reference="deposit:own", memo="bought")
    ledger.hold(user_id=user.pk, amount=Decimal("1.1"), reference="hold:own", memo="a job")

    response = api.get(balance_path(user.pk))

    assert response.status_code == 200, response.content
    assert response.json() == {
        "user_id": str(user.pk), "currency": "AITBC", "available": "1.90000001", "held": "1.10000000",
    }


def test_the_balance_of_someone_else_is_user_not_found(db: None) -> None:
    alice = logged_in(ALICE)
    logged_in(BOB)

    assert_api_error(alice.get(balance_path(user_of(BOB).pk)), status=404, code="USER_NOT_FOUND")


@pytest.mark.parametrize("user_id", [SOME_ID, "not-a-uuid"], ids=["unknown", "malformed"])
def test_the_balance_of_an_unknown_or_malformed_user_id_is_user_not_found(db: None, user_id: str) -> None:
    assert_api_error(logged_in(ALICE).get(balance_path(user_id)), status=404, code="USER_NOT_FOUND")


def test_an_admin_key_reads_any_users_balance(admin_api: APIClient) -> None:
    logged_in(ALICE)
    user = user_of(ALICE)
    ledger.deposit(user_id=user.pk, amount=Decimal("7"), reference="deposit:admin", memo="bought")

    response = admin_api.get(balance_path(user.pk))

    assert response.status_code == 200, response.content
    assert response.json() == {
        "user_id": str(user.pk), "currency": "AITBC", "available": "7.00000000", "held": "0.00000000",
    }


@pytest.mark.parametrize("user_id", [SOME_ID, "not-a-uuid"], ids=["unknown", "malformed"])
def test_an_admin_key_asking_for_an_unknown_user_gets_user_not_found(admin_api: APIClient, user_id: str) -> None:
    assert_api_error(admin_api.get(balance_path(user_id)), status=404, code="USER_NOT_FOUND")


@pytest.mark.parametrize("role", [ApiKeyRole.CLIENT, ApiKeyRole.MINER])
def test_a_client_or_miner_key_reading_a_balance_gets_user_not_found(db: None, role: str) -> None:
    logged_in(ALICE)
    _, raw_key = api_key_issue(role=role, name="not an operator")

    assert_api_error(api_with_key(raw_key).get(balance_path(user_of(ALICE).pk)), status=404, code="USER_NOT_FOUND")


def test_a_balance_without_credentials_is_authentication_required(db: None) -> None:
    response = APIClient().get(balance_path(SOME_ID))

    assert_api_error(response, status=401, code="AUTHENTICATION_REQUIRED")


def test_a_balance_with_an_unknown_key_is_invalid_api_key(db: None) -> None:
    assert_api_error(api_with_key("not-a-key").get(balance_path(SOME_ID)), status=401, code="INVALID_API_KEY")


def test_a_balance_with_a_dead_session_is_invalid_session(db: None) -> None:
    api = logged_in(ALICE)
    user_id = user_of(ALICE).pk
    assert api.post(LOGOUT).status_code == 204

    assert_api_error(api.get(balance_path(user_id)), status=401, code="INVALID_SESSION")


# --- the session matrix on every session-only endpoint ----------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), SESSION_ONLY_ENDPOINTS, ids=map(endpoint_id, SESSION_ONLY_ENDPOINTS))
def test_without_a_session_it_is_authentication_required(db: None, method: str, path: str) -> None:
    response = call(APIClient(), method, path)

    assert_api_error(response, status=401, code="AUTHENTICATION_REQUIRED")
    assert response.headers["WWW-Authenticate"] == "X-Session-Token"


@pytest.mark.parametrize(("method", "path"), SESSION_ONLY_ENDPOINTS, ids=map(endpoint_id, SESSION_ONLY_ENDPOINTS))
def test_an_unknown_session_token_is_invalid_session(db: None, method: str, path: str) -> None:
    assert_api_error(call(session_api("made-up-token"), method, path), status=401, code="INVALID_SESSION")


@pytest.mark.parametrize(("method", "path"), SESSION_ONLY_ENDPOINTS, ids=map(endpoint_id, SESSION_ONLY_ENDPOINTS))
def test_an_expired_session_is_invalid_session(db: None, method: str, path: str) -> None:
    api = logged_in(ALICE)
    UserSession.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    assert_api_error(call(api, method, path), status=401, code="INVALID_SESSION")


@pytest.mark.parametrize(("method", "path"), SESSION_ONLY_ENDPOINTS, ids=map(endpoint_id, SESSION_ONLY_ENDPOINTS))
def test_a_logged_out_session_is_invalid_session(db: None, method: str, path: str) -> None:
    api = logged_in(ALICE)
    assert api.post(LOGOUT).status_code == 204

    assert_api_error(call(api, method, path), status=401, code="INVALID_SESSION")


def test_a_session_of_a_deactivated_user_is_invalid_session(db: None) -> None:
    api = logged_in(ALICE)
    User.objects.filter(wallet_address=ALICE.canonical).update(is_active=False)

    assert_api_error(api.get(ME), status=401, code="INVALID_SESSION")


@pytest.mark.parametrize("role", [ApiKeyRole.CLIENT, ApiKeyRole.MINER, ApiKeyRole.ADMIN])
@pytest.mark.parametrize(("method", "path"), SESSION_ONLY_ENDPOINTS, ids=map(endpoint_id, SESSION_ONLY_ENDPOINTS))
def test_an_api_key_counts_as_no_session(db: None, role: str, method: str, path: str) -> None:
    logged_in(ALICE)
    # Even a key the wallet user owns is no session.
    _, raw_key = api_key_issue(role=role, name="not a session", user=user_of(ALICE))

    assert_api_error(call(api_with_key(raw_key), method, path), status=401, code="AUTHENTICATION_REQUIRED")


# --- /v1/users/me/api-keys -------------------------------------------------------------------------------------


def test_a_user_issues_a_client_key_shown_once_that_submits_jobs_as_the_user(db: None) -> None:
    api = logged_in(ALICE)
    user = user_of(ALICE)
    ledger.deposit(user_id=user.pk, amount=Decimal("5"), reference="deposit:key", memo="bought")

    response = api.post(API_KEYS, {"role": "client", "name": "laptop"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "key", "prefix", "role", "name", "created_at"}
    assert (body["role"], body["name"]) == ("client", "laptop")
    stored = ApiKey.objects.get(pk=body["id"])
    assert stored.user == user and stored.prefix == body["prefix"]
    assert stored.key_hash == hashlib.sha256(body["key"].encode()).hexdigest()
    job = submit_job(api_with_key(body["key"]))
    assert job["client_id"] == str(user.pk)


def test_a_user_issues_a_miner_key_that_registers_miners(db: None) -> None:
    api = logged_in(ALICE)

    body = api.post(API_KEYS, {"role": "miner", "name": "rig"}, format="json").json()

    miner = register_miner(api_with_key(body["key"]), address=ALICE.canonical)
    assert miner["address"] == ALICE.canonical


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "admin", "name": "x"}, "role"),
        ({"role": "operator", "name": "x"}, "role"),
        ({"name": "x"}, "role"),
        ({"role": "client"}, "name"),
        ({"role": "client", "name": ""}, "name"),
        ({"role": "client", "name": "x" * 101}, "name"),
        ({"role": "client", "name": "x", "user_id": SOME_ID}, "user_id"),
    ],
    ids=["admin role", "unknown role", "no role", "no name", "empty name", "name too long", "unknown field"],
)
def test_an_invalid_key_request_is_a_validation_error_and_issues_nothing(
    db: None, body: dict[str, Any], field: str
) -> None:
    api = logged_in(ALICE)

    error = assert_api_error(api.post(API_KEYS, body, format="json"), status=400, code="VALIDATION_ERROR")

    assert field in error["details"]
    assert not ApiKey.objects.filter(user=user_of(ALICE)).exists()


def test_the_key_list_is_the_users_keys_newest_first_without_secrets(db: None) -> None:
    alice, bob = logged_in(ALICE), logged_in(BOB)
    first = alice.post(API_KEYS, {"role": "client", "name": "one"}, format="json").json()
    second = alice.post(API_KEYS, {"role": "miner", "name": "two"}, format="json").json()
    bob.post(API_KEYS, {"role": "client", "name": "bob's"}, format="json")

    response = alice.get(API_KEYS)

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"results", "next", "previous"}
    assert [key["id"] for key in body["results"]] == [second["id"], first["id"]]
    for listed in body["results"]:
        assert set(listed) == {"id", "prefix", "role", "name", "created_at", "last_used_at", "revoked_at"}
    assert first["key"] not in response.content.decode() and second["key"] not in response.content.decode()


def test_the_key_list_of_a_user_without_keys_is_empty(db: None) -> None:
    assert logged_in(ALICE).get(API_KEYS).json() == {"results": [], "next": None, "previous": None}


def test_revoking_a_key_answers_204_and_the_key_is_refused_from_then_on(db: None) -> None:
    api = logged_in(ALICE)
    issued = api.post(API_KEYS, {"role": "client", "name": "old"}, format="json").json()
    assert api_with_key(issued["key"]).get("/v1/client/jobs").status_code == 200

    response = api.delete(f"{API_KEYS}/{issued['id']}")

    assert response.status_code == 204
    assert_api_error(api_with_key(issued["key"]).get("/v1/client/jobs"), status=401, code="INVALID_API_KEY")
    listed = api.get(API_KEYS).json()["results"]
    assert [key["id"] for key in listed] == [issued["id"]] and listed[0]["revoked_at"] is not None


def test_revoking_a_revoked_key_again_keeps_the_first_revocation(db: None) -> None:
    api = logged_in(ALICE)
    issued = api.post(API_KEYS, {"role": "client", "name": "old"}, format="json").json()
    assert api.delete(f"{API_KEYS}/{issued['id']}").status_code == 204
    first_revocation = ApiKey.objects.get(pk=issued["id"]).revoked_at

    assert api.delete(f"{API_KEYS}/{issued['id']}").status_code == 204

    assert ApiKey.objects.get(pk=issued["id"]).revoked_at == first_revocation


def test_revoking_another_users_key_is_api_key_not_found_and_the_key_keeps_working(db: None) -> None:
    alice, bob = logged_in(ALICE), logged_in(BOB)
    bobs = bob.post(API_KEYS, {"role": "client", "name": "bob's"}, format="json").json()

    response = alice.delete(f"{API_KEYS}/{bobs['id']}")

    assert_api_error(response, status=404, code="API_KEY_NOT_FOUND")
    assert ApiKey.objects.get(pk=bobs["id"]).revoked_at is None
    assert api_with_key(bobs["key"]).get("/v1/client/jobs").status_code == 200


def test_revoking_a_service_key_from_a_wallet_session_is_api_key_not_found(client_api: APIClient) -> None:
    service_key = ApiKey.objects.get(key_hash=hashlib.sha256(client_api.raw_key.encode()).hexdigest())  # type: ignore[attr-defined]

    assert_api_error(logged_in(ALICE).delete(f"{API_KEYS}/{service_key.pk}"), status=404, code="API_KEY_NOT_FOUND")


@pytest.mark.parametrize("key_id", [SOME_ID, "not-a-uuid"], ids=["unknown", "malformed"])
def test_revoking_an_unknown_or_malformed_key_id_is_api_key_not_found(db: None, key_id: str) -> None:
    assert_api_error(logged_in(ALICE).delete(f"{API_KEYS}/{key_id}"), status=404, code="API_KEY_NOT_FOUND")


# --- GET /v1/users/me/ledger -----------------------------------------------------------------------------------


def test_the_ledger_lists_the_users_entries_newest_first(db: None) -> None:
    api = logged_in(ALICE)
    user = user_of(ALICE)
    ledger.deposit(user_id=user.pk, amount=Decimal("10"), reference="deposit:ledger", memo="bought")
    key = api.post(API_KEYS, {"role": "client", "name": "laptop"}, format="json").json()["key"]
    job = submit_job(api_with_key(key))

    response = api.get(LEDGER)

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"results", "next", "previous"}
    for entry in body["results"]:
        assert set(entry) == {"id", "kind", "account", "amount", "reference", "created_at"}
    hold = f"job:{job['id']}:hold"
    assert [(e["kind"], e["account"], e["amount"], e["reference"]) for e in body["results"]] == [
        ("job_hold", "held", "1.00000000", hold),
        ("job_hold", "available", "-1.00000000", hold),
        ("deposit", "available", "10.00000000", "deposit:ledger"),
    ]


def test_the_ledger_shows_neither_other_users_nor_platform_entries(db: None) -> None:
    alice = logged_in(ALICE)
    logged_in(BOB)
    ledger.deposit(user_id=user_of(BOB).pk, amount=Decimal("4"), reference="deposit:bob", memo="bought")

    assert alice.get(LEDGER).json() == {"results": [], "next": None, "previous": None}


def test_the_ledger_is_cursor_paginated(db: None) -> None:
    api = logged_in(ALICE)
    user = user_of(ALICE)
    for number in range(5):
        ledger.deposit(user_id=user.pk, amount=Decimal(number + 1), reference=f"deposit:{number}", memo="bought")

    first = api.get(LEDGER, {"limit": 2}).json()
    second = api.get(first["next"]).json()

    assert [entry["reference"] for entry in first["results"]] == ["deposit:4", "deposit:3"]
    assert [entry["reference"] for entry in second["results"]] == ["deposit:2", "deposit:1"]


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "101"}], ids=["0", "101"])
def test_the_ledger_refuses_invalid_paging(db: None, query: dict[str, str]) -> None:
    assert_api_error(logged_in(ALICE).get(LEDGER, query), status=400, code="VALIDATION_ERROR")


# --- miners' wallets -------------------------------------------------------------------------------------------


def test_a_miner_wallet_that_earned_before_logs_in_as_its_existing_user(db: None) -> None:
    earner = wallet_user_for(address=ALICE.canonical)

    body = log_in(APIClient(), ALICE)

    assert body["created"] is False
    assert body["user"]["id"] == str(earner.pk)


# --- CORS ------------------------------------------------------------------------------------------------------


def preflight(origin: str, path: str = LOGIN) -> Any:
    return APIClient().options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-session-token",
        },
    )


def test_a_preflight_from_an_allowed_origin_is_allowed(db: None, settings: Any) -> None:
    settings.CORS_ALLOWED_ORIGINS = ["https://wallet.aitbc.example"]

    response = preflight("https://wallet.aitbc.example")

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://wallet.aitbc.example"
    allowed_headers = {name.strip().lower() for name in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "x-session-token"} <= allowed_headers


def test_a_preflight_from_another_origin_is_not_allowed(db: None, settings: Any) -> None:
    settings.CORS_ALLOWED_ORIGINS = ["https://wallet.aitbc.example"]

    response = preflight("https://evil.example")

    assert "Access-Control-Allow-Origin" not in response.headers


def test_no_origin_is_allowed_by_default(db: None, settings: Any) -> None:
    settings.CORS_ALLOWED_ORIGINS = []

    assert "Access-Control-Allow-Origin" not in preflight("https://wallet.aitbc.example").headers


def test_a_cross_origin_login_from_an_allowed_origin_carries_the_allow_origin_header(db: None, settings: Any) -> None:
    settings.CORS_ALLOWED_ORIGINS = ["https://wallet.aitbc.example"]
    api = APIClient(headers={"Origin": "https://wallet.aitbc.example"})

    response = api.post(CHALLENGE, {"address": ALICE.canonical}, format="json")

    assert response.status_code == 201
    assert response.headers["Access-Control-Allow-Origin"] == "https://wallet.aitbc.example"
