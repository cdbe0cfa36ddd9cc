"""The exchange's test world: a fixed configuration, buyers with wallet sessions, and the chain servers."""

from collections.abc import Iterator
from decimal import Decimal

import pytest
from pytest_django.fixtures import Settings
from rest_framework.test import APIClient

from accounts.models import User
from exchange.tests.chain_servers import BitcoindServer, Chain, ChainServer, EsploraServer
from exchange.tests.factories import BIP84_ZPUB, make_buyer, session_api


@pytest.fixture(autouse=True)
def exchange_settings(settings: Settings) -> Settings:
    """Every exchange setting pinned, so the environment the suite runs in changes nothing."""
    settings.BTC_TO_AITBC_RATE = Decimal("100000")
    settings.RATE_MAX_CHANGE = Decimal("0.2")
    settings.EXCHANGE_MIN_BTC = Decimal("0.00001")
    settings.EXCHANGE_MAX_BTC = Decimal("1")
    settings.BITCOIN_XPUB = BIP84_ZPUB
    settings.BITCOIN_ADDRESS = ""
    settings.BITCOIN_BACKEND = "manual"
    settings.BITCOIN_BACKEND_TIMEOUT = 1
    settings.BITCOIN_MIN_CONFIRMATIONS = 1
    settings.BITCOIN_LARGE_PAYMENT_CONFIRMATIONS = 3
    settings.BITCOIN_LARGE_PAYMENT_BTC = Decimal("0.1")
    settings.PAYMENT_EXPIRY_SECONDS = 900
    settings.PAYMENT_LATE_GRACE_SECONDS = 86400
    settings.PAYMENT_CHECK_INTERVAL = 30
    settings.PAYMENT_DEPOSIT_WATCH_SECONDS = 7 * 86400
    return settings


@pytest.fixture
def chain() -> Chain:
    return Chain()


@pytest.fixture
def esplora(chain: Chain) -> Iterator[EsploraServer]:
    server = EsploraServer(chain)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bitcoind(chain: Chain) -> Iterator[BitcoindServer]:
    server = BitcoindServer(chain)
    server.start()
    yield server
    server.stop()


def use_backend(settings: Settings, server: ChainServer) -> None:
    """Point BITCOIN_BACKEND and its URL at a chain server."""
    if isinstance(server, EsploraServer):
        settings.BITCOIN_BACKEND, settings.ESPLORA_URL = "esplora", server.url
    elif isinstance(server, BitcoindServer):
        settings.BITCOIN_BACKEND, settings.BITCOIND_RPC_URL = "bitcoind", server.rpc_url()


@pytest.fixture(params=["esplora", "bitcoind"])
def node(request: pytest.FixtureRequest, exchange_settings: Settings) -> ChainServer:
    """The chain backend the exchange is configured with; a test using it runs once with each."""
    server: ChainServer = request.getfixturevalue(request.param)
    use_backend(exchange_settings, server)
    return server


@pytest.fixture
def bitcoind_node(bitcoind: BitcoindServer, exchange_settings: Settings) -> BitcoindServer:
    """bitcoind as the exchange's backend, for what only bitcoind does (importing addresses)."""
    use_backend(exchange_settings, bitcoind)
    return bitcoind


@pytest.fixture
def buyer(db: None) -> User:
    return make_buyer("alice")


@pytest.fixture
def other_buyer(db: None) -> User:
    return make_buyer("bob")


@pytest.fixture
def buyer_api(buyer: User) -> APIClient:
    return session_api(buyer)


@pytest.fixture
def other_buyer_api(other_buyer: User) -> APIClient:
    return session_api(other_buyer)
