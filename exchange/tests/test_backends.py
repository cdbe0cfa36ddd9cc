"""The two chain backends against real HTTP servers on 127.0.0.1 speaking Esplora's REST API and Bitcoin Core's
JSON-RPC: what each reports for an address, and that every way the far end can fail is a BackendError, raised
within the configured timeout, never another exception."""

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from exchange.backends import BackendError, BitcoindBackend, ChainOutput, EsploraBackend
from exchange.tests.chain_servers import BitcoindServer, Chain, ChainServer, EsploraServer, Failure
from exchange.tests.factories import BIP84_RECEIVE_0, BIP84_RECEIVE_1

TIMEOUT = 0.5
ADDRESS = BIP84_RECEIVE_0
AN_HOUR_AGO = datetime.now(tz=UTC) - timedelta(hours=1)

Backend = EsploraBackend | BitcoindBackend


def backend_for(server: ChainServer, *, timeout: float = TIMEOUT) -> Backend:
    if isinstance(server, EsploraServer):
        return EsploraBackend(server.url, timeout)
    assert isinstance(server, BitcoindServer)
    return BitcoindBackend(server.rpc_url(), timeout)


@pytest.fixture(params=["esplora", "bitcoind"])
def server(request: pytest.FixtureRequest) -> ChainServer:
    return request.getfixturevalue(request.param)


def block_time(chain: Chain, txid: str) -> datetime:
    transaction = chain.transaction(txid)
    assert transaction is not None and transaction.block_height is not None
    return datetime.fromtimestamp(chain.block_time(transaction.block_height), tz=UTC)


def test_it_reports_each_output_paying_the_address_with_its_confirmations_and_block_time(
    server: ChainServer, chain: Chain
) -> None:
    backend = backend_for(server)
    backend.watch(ADDRESS, since=AN_HOUR_AGO)
    first = chain.pay(ADDRESS, "0.0004")
    chain.mine()
    second = chain.pay(ADDRESS, "0.0006")
    chain.mine(2)
    waiting = chain.pay(ADDRESS, "0.00000547")

    outputs = {output.txid: output for output in backend.outputs_to(ADDRESS, since=AN_HOUR_AGO)}

    # Output 0 of each transaction is the payer's change to another address: only output 1 pays ours.
    assert outputs == {
        first: ChainOutput(first, 1, Decimal("0.0004"), 3, block_time(chain, first), chain.tip_height - 2),
        second: ChainOutput(second, 1, Decimal("0.0006"), 2, block_time(chain, second), chain.tip_height - 1),
        waiting: ChainOutput(waiting, 1, Decimal("0.00000547"), 0, None, None),
    }


def test_amounts_are_exact_to_the_satoshi(server: ChainServer, chain: Chain) -> None:
    backend = backend_for(server)
    backend.watch(ADDRESS, since=AN_HOUR_AGO)
    # 0.1 + 0.2 style amounts and the largest possible one: a float anywhere on the way would lose a satoshi.
    for amount in ("0.00000001", "0.30000003", "20999999.97690000"):
        chain.pay(ADDRESS, amount)
    chain.mine()

    values = sorted(output.value_btc for output in backend.outputs_to(ADDRESS, since=AN_HOUR_AGO))

    assert values == [Decimal("0.00000001"), Decimal("0.30000003"), Decimal("20999999.9769")]
    assert all(value.as_tuple().exponent >= -8 for value in values)


def test_payments_to_other_addresses_are_not_reported(server: ChainServer, chain: Chain) -> None:
    backend = backend_for(server)
    backend.watch(ADDRESS, since=AN_HOUR_AGO)
    backend.watch(BIP84_RECEIVE_1, since=AN_HOUR_AGO)
    chain.pay(BIP84_RECEIVE_1, "0.001")
    chain.mine()

    assert backend.outputs_to(ADDRESS, since=AN_HOUR_AGO) == []


def test_esplora_needs_no_import_and_reads_the_tip_and_the_address_history(esplora: EsploraServer) -> None:
    backend = backend_for(esplora)
    backend.watch(ADDRESS, since=AN_HOUR_AGO)
    assert esplora.requests == []

    backend.outputs_to(ADDRESS, since=AN_HOUR_AGO)

    assert esplora.requests == ["GET /api/blocks/tip/height", f"GET /api/address/{ADDRESS}/txs"]


def test_it_reports_every_output_of_a_busy_address_since_the_moment_asked_for(
    server: ChainServer, chain: Chain
) -> None:
    backend = backend_for(server)
    backend.watch(ADDRESS, since=AN_HOUR_AGO)
    # More than two of Esplora's pages of confirmed transactions, and some still in the mempool.
    paid = [chain.pay(ADDRESS, Decimal("0.0001") + n * Decimal("0.00000001")) for n in range(60)]
    for _ in range(60):
        chain.mine()
    paid += [chain.pay(ADDRESS, "0.002") for _ in range(3)]

    outputs = backend.outputs_to(ADDRESS, since=AN_HOUR_AGO)

    assert sorted(output.txid for output in outputs) == sorted(paid)


def test_esplora_pages_back_only_until_the_transactions_are_older_than_asked_for(
    esplora: EsploraServer, chain: Chain
) -> None:
    backend = backend_for(esplora)
    for _ in range(30):
        chain.pay(ADDRESS, "0.0001")
    chain.mine(at=time.time() - 5 * 3600)
    recent = [chain.pay(ADDRESS, "0.0002") for _ in range(30)]
    for _ in range(30):
        chain.mine()
    asked_at = datetime.now(tz=UTC) - timedelta(minutes=1)

    outputs = backend.outputs_to(ADDRESS, since=asked_at)

    # The 30 recent ones fill a page and a bit; the page reaching back five hours is the last one read.
    assert set(recent) <= {output.txid for output in outputs}
    pages = [request for request in esplora.requests if "/txs" in request]
    assert len(pages) == 2, pages
    assert pages[1].startswith(f"GET /api/address/{ADDRESS}/txs/chain/")


def test_esplora_given_a_height_pages_back_until_the_transactions_are_at_or_below_it_whatever_their_block_times(
    esplora: EsploraServer, chain: Chain
) -> None:
    backend = backend_for(esplora)
    for _ in range(30):
        chain.pay(ADDRESS, "0.0001")
    chain.mine()
    after = chain.tip_height
    # Mined after that height, in a block whose time is five hours off: time alone would stop paging before it.
    newer = [chain.pay(ADDRESS, "0.0002") for _ in range(30)]
    chain.mine(at=time.time() - 5 * 3600)
    for _ in range(30):
        newer.append(chain.pay(ADDRESS, "0.0003"))
        chain.mine()

    outputs = backend.outputs_to(ADDRESS, since=datetime.now(tz=UTC) - timedelta(minutes=1), after_height=after)

    assert set(newer) <= {output.txid for output in outputs}
    # Page 3 reaches the block at `after`: the last one read.
    assert len([request for request in esplora.requests if "/txs" in request]) == 3


def test_bitcoind_imports_the_address_as_a_checksummed_descriptor_rescanning_from_when_it_was_handed_out(
    bitcoind: BitcoindServer, chain: Chain
) -> None:
    backend_for(bitcoind).watch(ADDRESS, since=AN_HOUR_AGO)

    [entry] = chain.imports
    assert entry.address == ADDRESS
    # The checksum is what bitcoind's getdescriptorinfo computes (BIP 380); importdescriptors refuses one without.
    assert entry.descriptor.startswith(f"addr({ADDRESS})#") and len(entry.descriptor.split("#")[1]) == 8
    assert entry.timestamp == int(AN_HOUR_AGO.timestamp())
    assert bitcoind.requests == ["getdescriptorinfo", "importdescriptors"]


def test_bitcoind_sees_only_addresses_imported_into_its_watch_only_wallet(
    bitcoind: BitcoindServer, chain: Chain
) -> None:
    backend = backend_for(bitcoind)
    txid = chain.pay(ADDRESS, "0.001")
    chain.mine()
    assert backend.outputs_to(ADDRESS, since=AN_HOUR_AGO) == []

    backend.watch(ADDRESS, since=AN_HOUR_AGO)

    assert [output.txid for output in backend.outputs_to(ADDRESS, since=AN_HOUR_AGO)] == [txid]


def test_it_reports_the_height_of_the_chains_tip(server: ChainServer, chain: Chain) -> None:
    backend = backend_for(server)
    assert backend.tip_height() == 850_000

    chain.mine(3)

    assert backend.tip_height() == 850_003


def test_esplora_reports_history_for_an_address_paid_in_the_mempool_or_on_the_chain(
    esplora: EsploraServer, chain: Chain
) -> None:
    backend = backend_for(esplora)
    assert backend.address_has_history(ADDRESS) is False

    chain.pay(ADDRESS, "0.001")
    assert backend.address_has_history(ADDRESS) is True
    chain.mine()
    assert backend.address_has_history(ADDRESS) is True

    assert backend.address_has_history(BIP84_RECEIVE_1) is False
    assert esplora.requests[-1] == f"GET /api/address/{BIP84_RECEIVE_1}"


def test_bitcoind_reports_the_history_its_watch_only_wallet_knows_of_an_address(
    bitcoind: BitcoindServer, chain: Chain
) -> None:
    backend = backend_for(bitcoind)
    backend.watch(ADDRESS, since=AN_HOUR_AGO)
    assert backend.address_has_history(ADDRESS) is False

    chain.pay(ADDRESS, "0.001")
    assert backend.address_has_history(ADDRESS) is True
    chain.mine()
    assert backend.address_has_history(ADDRESS) is True

    # An address the wallet never imported: bitcoind knows nothing of it (its import would rescan from the request).
    chain.pay(BIP84_RECEIVE_1, "0.001")
    assert backend.address_has_history(BIP84_RECEIVE_1) is False


def _refuse_connections(server: ChainServer) -> None:
    server.stop()


def _fail_with(failure: Failure) -> Callable[[ChainServer], None]:
    def fail(server: ChainServer) -> None:
        server.failure = failure

    return fail


FAILURES = {
    "connection refused": _refuse_connections,
    "HTTP 503": _fail_with(Failure.UNAVAILABLE),
    "an HTML page": _fail_with(Failure.NOT_JSON),
    "JSON of the wrong shape": _fail_with(Failure.WRONG_SHAPE),
    "no answer within the timeout": _fail_with(Failure.HANG),
}


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_every_failure_of_the_far_end_reading_outputs_is_a_backend_error_within_the_timeout(
    server: ChainServer, chain: Chain, failure: Callable[[ChainServer], None]
) -> None:
    backend = backend_for(server)
    backend.watch(ADDRESS, since=AN_HOUR_AGO)
    chain.pay(ADDRESS, "0.001")
    chain.mine()
    failure(server)

    started = time.monotonic()
    with pytest.raises(BackendError):
        backend.outputs_to(ADDRESS, since=AN_HOUR_AGO)
    assert time.monotonic() - started < 3 * TIMEOUT + 1


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_every_failure_of_the_far_end_reading_the_tip_or_an_addresss_history_is_a_backend_error(
    server: ChainServer, chain: Chain, failure: Callable[[ChainServer], None]
) -> None:
    backend = backend_for(server)
    backend.watch(ADDRESS, since=AN_HOUR_AGO)
    failure(server)

    started = time.monotonic()
    with pytest.raises(BackendError):
        backend.tip_height()
    with pytest.raises(BackendError):
        backend.address_has_history(ADDRESS)
    assert time.monotonic() - started < 6 * TIMEOUT + 1


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_every_failure_of_bitcoind_importing_an_address_is_a_backend_error(
    bitcoind: BitcoindServer, chain: Chain, failure: Callable[[ChainServer], None]
) -> None:
    failure(bitcoind)

    with pytest.raises(BackendError):
        backend_for(bitcoind).watch(ADDRESS, since=AN_HOUR_AGO)
    assert chain.imports == []


def test_a_bitcoind_too_old_to_name_block_heights_is_a_backend_error_not_outputs_taken_as_old(
    bitcoind: BitcoindServer, chain: Chain
) -> None:
    backend = backend_for(bitcoind)
    backend.watch(ADDRESS, since=AN_HOUR_AGO)
    chain.pay(ADDRESS, "0.001")
    chain.mine()
    bitcoind.omits_block_height = True

    with pytest.raises(BackendError, match=r"0\.20 or newer"):
        backend.outputs_to(ADDRESS, since=AN_HOUR_AGO)


def test_bitcoind_refusing_the_credentials_is_a_backend_error(bitcoind: BitcoindServer) -> None:
    backend = BitcoindBackend(bitcoind.rpc_url(password="wrong"), TIMEOUT)

    with pytest.raises(BackendError, match="401"):
        backend.outputs_to(ADDRESS, since=AN_HOUR_AGO)
    assert bitcoind.requests == ["401"]


def test_a_bitcoind_wallet_that_is_not_loaded_is_a_backend_error(bitcoind: BitcoindServer) -> None:
    backend = BitcoindBackend(bitcoind.rpc_url(wallet="other"), TIMEOUT)

    with pytest.raises(BackendError, match="not loaded"):
        backend.watch(ADDRESS, since=AN_HOUR_AGO)


def test_an_esplora_url_without_the_api_path_is_a_backend_error(esplora: EsploraServer) -> None:
    backend = EsploraBackend(esplora.base_url, TIMEOUT)

    with pytest.raises(BackendError, match="404"):
        backend.outputs_to(ADDRESS, since=AN_HOUR_AGO)
