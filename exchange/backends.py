"""Where the coordinator learns what the chain paid: the Esplora REST API, Bitcoin Core's JSON-RPC, or operators.

Each backend answers three questions — how high the chain is, whether an address was ever paid, and which outputs
pay an address, with how many confirmations and in which block — and raises BackendError for anything it cannot
answer (down, timing out, or answering garbage), so the caller changes nothing and tries again on its next round.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import httpx
from django.conf import settings

SATOSHI = Decimal("0.00000001")
# A block's time may be up to two hours off the clock (consensus rules), so a payment asked for at T may be mined in
# a block stamped T - 2 h.
BLOCK_TIME_LEEWAY = timedelta(hours=2)


class BackendError(Exception):
    pass


@dataclass(frozen=True)
class ChainOutput:
    txid: str
    vout: int
    value_btc: Decimal
    confirmations: int
    # When the block holding it was mined; None while it waits in the mempool.
    block_time: datetime | None
    # The height of that block; None while it waits in the mempool. What decides an output's age: block times may
    # be hours off, heights never are.
    block_height: int | None = None


class ChainBackend(Protocol):
    # The height of the chain's tip; None when the backend reads no chain (manual).
    def tip_height(self) -> int | None: ...

    # Whether any transaction, confirmed or in the mempool, ever paid or spent from the address.
    def address_has_history(self, address: str) -> bool: ...

    # `since`: when the address was handed out; nothing paid to it can be older.
    def watch(self, address: str, *, since: datetime) -> None: ...

    # Every output paying the address since then, or above `after_height` when given (at least; older ones may
    # come too).
    def outputs_to(
        self, address: str, *, since: datetime, after_height: int | None = None
    ) -> list[ChainOutput]: ...


class ManualBackend:
    """Nothing is watched: operators confirm payments in the admin. It reads no chain, so it knows no tip height and
    no address's history: the operator checks both in the wallet before confirming."""

    def tip_height(self) -> int | None:
        return None

    def address_has_history(self, address: str) -> bool:
        return False

    def watch(self, address: str, *, since: datetime) -> None:
        return None

    def outputs_to(self, address: str, *, since: datetime, after_height: int | None = None) -> list[ChainOutput]:
        return []


def _get_json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.text, parse_float=Decimal)
    except ValueError as error:
        raise BackendError(f"answer is not JSON: {error}") from None


class EsploraBackend:
    """The REST API of blockstream.info and mempool.space (github.com/Blockstream/esplora/blob/master/API.md)."""

    # `/address/:a/txs` answers the mempool and the newest CONFIRMED_PAGE confirmed transactions;
    # `/address/:a/txs/chain/:last_seen_txid` the next CONFIRMED_PAGE older ones.
    CONFIRMED_PAGE = 25
    # A shared address busier than this since one payment was asked for is a configuration to change, not to page.
    MAX_PAGES = 40

    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str) -> httpx.Response:
        try:
            response = httpx.get(f"{self.base_url}{path}", timeout=self.timeout)
        except httpx.HTTPError as error:
            raise BackendError(f"Esplora at {self.base_url} unreachable: {error}") from None
        if response.status_code != 200:
            raise BackendError(f"Esplora answered {response.status_code} for {path}")
        return response

    def watch(self, address: str, *, since: datetime) -> None:
        return None  # Esplora indexes every address already.

    def tip_height(self) -> int:
        tip_text = self._get("/blocks/tip/height").text.strip()
        if not tip_text.isdigit():
            raise BackendError(f"Esplora tip height is not a number: {tip_text[:50]!r}")
        return int(tip_text)

    def address_has_history(self, address: str) -> bool:
        stats = _get_json(self._get(f"/address/{address}"))
        try:
            return int(stats["chain_stats"]["tx_count"]) + int(stats["mempool_stats"]["tx_count"]) > 0
        except (KeyError, TypeError, ValueError) as error:
            raise BackendError(f"Esplora answer for {address} is not address statistics: {error!r}") from None

    def outputs_to(self, address: str, *, since: datetime, after_height: int | None = None) -> list[ChainOutput]:
        tip = self.tip_height()
        try:
            transactions = self._transactions_since(address, since=since, after_height=after_height)
            return [
                ChainOutput(
                    txid=str(transaction["txid"]),
                    vout=index,
                    value_btc=int(output["value"]) * SATOSHI,
                    confirmations=tip - int(transaction["status"]["block_height"]) + 1
                    if transaction["status"]["confirmed"]
                    else 0,
                    block_time=datetime.fromtimestamp(int(transaction["status"]["block_time"]), tz=UTC)
                    if transaction["status"]["confirmed"]
                    else None,
                    block_height=int(transaction["status"]["block_height"])
                    if transaction["status"]["confirmed"]
                    else None,
                )
                for transaction in transactions
                for index, output in enumerate(transaction["vout"])
                if output.get("scriptpubkey_address") == address
            ]
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise BackendError(f"Esplora answer for {address} is not a transaction list: {error!r}") from None

    def _transactions_since(
        self, address: str, *, since: datetime, after_height: int | None
    ) -> list[dict[str, Any]]:
        """The address's transactions, newest first, paging back through confirmed ones until a page ends at or
        below `after_height` (when given: heights are exact), else before `since` less the block time leeway, or
        the history ends."""
        oldest_wanted = (since - BLOCK_TIME_LEEWAY).timestamp()
        page: list[dict[str, Any]] = _get_json(self._get(f"/address/{address}/txs"))
        transactions = list(page)
        for _ in range(self.MAX_PAGES):
            confirmed = [transaction for transaction in page if transaction["status"]["confirmed"]]
            if len(confirmed) < self.CONFIRMED_PAGE:
                return transactions
            oldest = confirmed[-1]["status"]
            if (int(oldest["block_height"]) <= after_height) if after_height is not None else (
                int(oldest["block_time"]) < oldest_wanted
            ):
                return transactions
            page = _get_json(self._get(f"/address/{address}/txs/chain/{confirmed[-1]['txid']}"))
            transactions.extend(page)
        raise BackendError(
            f"more than {self.MAX_PAGES * self.CONFIRMED_PAGE} transactions paid {address} since {since:%Y-%m-%d %H:%M}"
        )


class BitcoindBackend:
    """Bitcoin Core's JSON-RPC, watching addresses through a watch-only descriptor wallet.

    BITCOIND_RPC_URL carries the credentials and the wallet: http://user:password@host:8332/wallet/aitbc
    """

    def __init__(self, rpc_url: str, timeout: float) -> None:
        self.rpc_url = rpc_url
        self.timeout = timeout

    def _call(self, method: str, *params: Any) -> Any:
        try:
            response = httpx.post(
                self.rpc_url,
                json={"jsonrpc": "1.0", "id": "aitbc", "method": method, "params": list(params)},
                timeout=self.timeout,
            )
        except httpx.HTTPError as error:
            raise BackendError(f"bitcoind unreachable: {error}") from None
        # bitcoind answers RPC errors with HTTP 500 and a JSON body; anything else non-200 is a transport problem.
        if response.status_code not in (200, 500):
            raise BackendError(f"bitcoind answered HTTP {response.status_code} to {method}")
        body = _get_json(response)
        if not isinstance(body, dict) or "result" not in body:
            raise BackendError(f"bitcoind answer to {method} is not a JSON-RPC response")
        if body.get("error"):
            raise BackendError(f"bitcoind refused {method}: {body['error']}")
        return body["result"]

    def watch(self, address: str, *, since: datetime) -> None:
        # The import rescans blocks from its timestamp (less two hours). "now" would do for an address imported the
        # moment it is handed out, but an import retried after an outage must still find what was paid meanwhile.
        try:
            descriptor = self._call("getdescriptorinfo", f"addr({address})")["descriptor"]
            results = self._call(
                "importdescriptors", [{"desc": descriptor, "timestamp": int(since.timestamp()), "label": "aitbc"}]
            )
            imported = bool(results) and all(result.get("success") is True for result in results)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            message = f"bitcoind answer to the import of {address} is not what the RPC documents: {error!r}"
            raise BackendError(message) from None
        if not imported:
            raise BackendError(f"bitcoind did not import the descriptor of {address}: {results}")

    def tip_height(self) -> int:
        height = self._call("getblockcount")
        if not isinstance(height, int) or isinstance(height, bool) or height < 0:
            raise BackendError(f"bitcoind block count is not a height: {str(height)[:50]!r}")
        return height

    def address_has_history(self, address: str) -> bool:
        # What the watch-only wallet knows, mempool included (minconf 0), the same RPC `outputs_to` reads. An
        # address it never imported has no entry: that is enough, since the wallet then only ever learns of this
        # address's transactions from its import's rescan (two hours before the payment was asked for), and outputs
        # confirmed at or below the payment's recorded tip height never count anyway. `scantxoutset` would see
        # unspent outputs of any address, but reads the whole UTXO set (minutes on mainnet) within a request.
        try:
            received = self._call("listreceivedbyaddress", 0, True, True, address)
            return any(entry["address"] == address and entry["txids"] for entry in received)
        except (KeyError, TypeError, AttributeError) as error:
            raise BackendError(f"bitcoind answer for {address} is not what the RPC documents: {error!r}") from None

    def outputs_to(self, address: str, *, since: datetime, after_height: int | None = None) -> list[ChainOutput]:
        # The watch-only wallet lists everything paid to the address, `since` or not.
        try:
            received = self._call("listreceivedbyaddress", 0, True, True, address)
            txids = sorted({txid for entry in received if entry["address"] == address for txid in entry["txids"]})
            outputs = []
            for txid in txids:
                transaction = self._call("gettransaction", txid, True)
                confirmations = max(int(transaction["confirmations"]), 0)
                block_time = transaction.get("blocktime")
                block_height = transaction.get("blockheight")
                if confirmations and block_height is None:
                    # Bitcoin Core before 0.20 names no block height; without it an output's age is unknown, and
                    # taking it as old would credit nothing, silently.
                    raise BackendError(f"gettransaction {txid} has no blockheight: Bitcoin Core 0.20 or newer needed")
                outputs.extend(
                    ChainOutput(
                        txid=txid,
                        vout=int(detail["vout"]),
                        value_btc=Decimal(detail["amount"]).quantize(SATOSHI),
                        confirmations=confirmations,
                        block_time=datetime.fromtimestamp(int(block_time), tz=UTC) if block_time else None,
                        block_height=int(block_height) if block_height is not None and confirmations else None,
                    )
                    for detail in transaction["details"]
                    if detail.get("address") == address and detail.get("category") == "receive"
                )
            return outputs
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise BackendError(f"bitcoind answer for {address} is not what the RPC documents: {error!r}") from None


def backend_from_settings() -> ChainBackend:
    timeout = settings.BITCOIN_BACKEND_TIMEOUT
    if settings.BITCOIN_BACKEND == "esplora":
        return EsploraBackend(settings.ESPLORA_URL, timeout)
    if settings.BITCOIN_BACKEND == "bitcoind":
        return BitcoindBackend(settings.BITCOIND_RPC_URL, timeout)
    return ManualBackend()
