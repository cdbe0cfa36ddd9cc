"""Stand-ins for what the exchange talks to across the machine's boundary: an Esplora REST server and a Bitcoin Core
JSON-RPC server. Both are real HTTP servers on 127.0.0.1 (stdlib ThreadingHTTPServer in a background thread) and
serve one in-memory `Chain` that the test drives: broadcast a payment, mine blocks, make the server fail.

Protocols as documented:
- Esplora: https://github.com/Blockstream/esplora/blob/master/API.md (GET /blocks/tip/height, GET /address/:a with
  the address's chain_stats and mempool_stats, GET /address/:a/txs with up to 50 mempool and the newest 25 confirmed
  transactions, GET /address/:a/txs/chain/:last_seen_txid for the next 25 confirmed)
- Bitcoin Core: JSON-RPC 1.0 over HTTP POST with basic auth; the wallet RPCs a watch-only descriptor wallet answers
  (getdescriptorinfo, importdescriptors, listreceivedbyaddress, gettransaction) and getblockcount.
And a JSON price endpoint for `update_rate --source`.
"""

import base64
import enum
import hashlib
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from embit import script
from embit.descriptor.checksum import checksum as descriptor_checksum

SATS_PER_BTC = 100_000_000
# Output 0 of every transaction the tests broadcast is the payer's change (to an address of no wallet the tests
# derive from), so the payment is output 1 and a backend must pick outputs by address, not take the first.
CHANGE_ADDRESS = "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"
# Bitcoin Core rescans from TIMESTAMP_WINDOW before an import's timestamp, since block times may be off by two hours.
TIMESTAMP_WINDOW = 7200
# A hanging server gives up after this long even if nobody stops it; every client timeout in the tests is shorter.
HANG_SECONDS = 5.0
# Esplora's page sizes: /address/:a/txs answers up to 50 mempool and 25 confirmed transactions, /txs/chain 25.
ESPLORA_MEMPOOL_PAGE = 50
ESPLORA_CHAIN_PAGE = 25
# How long a gate waits for all its parties (processes starting Django on a busy machine take a while).
GATE_SECONDS = 90.0


class Failure(enum.Enum):
    NONE = "none"
    UNAVAILABLE = "unavailable"  # HTTP 503, as a proxy in front of a restarting node answers
    NOT_JSON = "not_json"  # HTTP 200 with an HTML error page
    WRONG_SHAPE = "wrong_shape"  # HTTP 200, valid JSON, but not the shape the API documents
    HANG = "hang"  # accepts the connection and never answers


@dataclass
class Transaction:
    txid: str
    outputs: list[tuple[str, int]]  # (address, satoshi) in output order
    broadcast_at: float
    block_height: int | None = None  # None while it waits in the mempool


@dataclass
class WalletImport:
    """One importdescriptors request the watch-only wallet accepted."""

    descriptor: str
    address: str
    timestamp: int | str
    imported_at: float
    rescan_from: float


def btc_to_sats(amount: Decimal | str) -> int:
    sats = Decimal(amount) * SATS_PER_BTC
    assert sats == sats.to_integral_value() and sats > 0, f"{amount} is not a whole number of satoshi"
    return int(sats)


class Chain:
    """The blocks and mempool both servers serve, plus the watch-only wallet bitcoind keeps. Thread-safe: the servers
    read it from their handler threads while the test writes it."""

    def __init__(self, tip_height: int = 850_000) -> None:
        self._lock = threading.RLock()
        self._txids = itertools.count(1)
        self._started = time.time()
        self._first_tip = tip_height
        self.tip_height = tip_height
        self._block_times: dict[int, float] = {}  # the time in each block's header
        self._connected_at: dict[int, float] = {}  # when each block reached the node
        self._transactions: dict[str, Transaction] = {}
        self.imports: list[WalletImport] = []

    # --- what the test does -------------------------------------------------------------------------------------

    def pay(self, address: str, amount_btc: Decimal | str) -> str:
        """Broadcast a transaction paying `amount_btc` to `address` (and change elsewhere); it waits in the mempool."""
        with self._lock:
            number = next(self._txids)
            txid = hashlib.sha256(f"tx{number}".encode()).hexdigest()
            self._transactions[txid] = Transaction(
                txid=txid,
                outputs=[(CHANGE_ADDRESS, 50_000 + number), (address, btc_to_sats(amount_btc))],
                broadcast_at=time.time(),
            )
            return txid

    def mine(self, blocks: int = 1, *, at: float | None = None) -> None:
        """Mine the mempool into the next block, then `blocks - 1` empty ones; blocks carry time `at` (default now)."""
        with self._lock:
            for _ in range(blocks):
                self.tip_height += 1
                self._connected_at[self.tip_height] = time.time()
                self._block_times[self.tip_height] = time.time() if at is None else at
                for transaction in self._transactions.values():
                    if transaction.block_height is None:
                        transaction.block_height = self.tip_height

    def drop(self, txid: str) -> None:
        """The transaction leaves the mempool (replaced by fee or double-spent) as if it never was."""
        with self._lock:
            assert self._transactions[txid].block_height is None, "only an unconfirmed transaction can vanish"
            del self._transactions[txid]

    # --- what the servers read ----------------------------------------------------------------------------------

    def block_time(self, height: int) -> int:
        with self._lock:
            # Blocks before the test started are ten minutes apart, ending when the chain was made.
            return int(self._block_times.get(height, self._started - (self._first_tip - height) * 600))

    def confirmations(self, transaction: Transaction) -> int:
        with self._lock:
            return 0 if transaction.block_height is None else self.tip_height - transaction.block_height + 1

    def transactions_to(self, address: str) -> list[Transaction]:
        """Newest first: the mempool in reverse broadcast order, then blocks from the tip down (Esplora's order)."""
        with self._lock:
            paying = [tx for tx in self._transactions.values() if any(out[0] == address for out in tx.outputs)]
            mempool = [tx for tx in reversed(paying) if tx.block_height is None]
            mined = sorted((tx for tx in paying if tx.block_height is not None), key=lambda tx: -(tx.block_height or 0))
            return mempool + mined

    def transaction(self, txid: str) -> Transaction | None:
        with self._lock:
            return self._transactions.get(txid)

    def import_descriptor(self, descriptor: str, address: str, timestamp: int | str) -> None:
        with self._lock:
            now = time.time()
            # "now" means the tip's time; either way the wallet rescans blocks from two hours before it.
            start = self.block_time(self.tip_height) if timestamp == "now" else float(timestamp)
            self.imports.append(WalletImport(descriptor, address, timestamp, now, start - TIMESTAMP_WINDOW))

    def wallet_sees(self, transaction: Transaction, address: str) -> bool:
        """Whether bitcoind's watch-only wallet knows a transaction to `address`: it must have imported the address,
        then seen the transaction enter the mempool, or its block being connected, or found it by the import's rescan
        (which covers blocks whose header time is at most TIMESTAMP_WINDOW before the import's timestamp)."""
        with self._lock:
            height = transaction.block_height
            for entry in (entry for entry in self.imports if entry.address == address):
                if transaction.broadcast_at >= entry.imported_at:
                    return True
                if height is not None and (
                    self._connected_at.get(height, self._started) >= entry.imported_at
                    or self.block_time(height) >= entry.rescan_from
                ):
                    return True
            return False

    def watched_addresses(self) -> list[str]:
        with self._lock:
            return list(dict.fromkeys(entry.address for entry in self.imports))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    node: "ChainServer"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    @property
    def node(self) -> "ChainServer":
        return self.server.node

    def send(self, status: int, body: str, content_type: str, headers: dict[str, str] | None = None) -> None:
        payload = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def answered_with_failure(self) -> bool:
        """Play the server's failure mode, if any; True when the request is answered (or dropped) by it."""
        failure = self.node.failure
        if failure is Failure.HANG:
            self.node.release.wait(HANG_SECONDS)
            self.close_connection = True
            return True
        if failure is Failure.UNAVAILABLE:
            self.send(503, "Service Unavailable", "text/plain")
            return True
        if failure is Failure.NOT_JSON:
            self.send(200, "<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
            return True
        return False


class ChainServer:
    """A real HTTP server on 127.0.0.1, port 0, serving `chain` from a background thread."""

    handler_class: ClassVar[type[_Handler]]

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.failure = Failure.NONE
        self.requests: list[str] = []
        self.release = threading.Event()
        self.port = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._gate: threading.Barrier | None = None
        self.gate_opened = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen (again, on the same port after `stop`)."""
        assert self._httpd is None, "already listening"
        self.release = threading.Event()
        self._httpd = _Server(("127.0.0.1", self.port), self.handler_class)
        self._httpd.node = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: connections are refused until `start`."""
        if self._httpd is None:
            return
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._httpd = None

    def gate(self, parties: int) -> None:
        """Hold the next `parties` address look-ups until all of them have arrived, so that many checkers read the
        same chain at the same moment and then race to act on it. Released after GATE_SECONDS at the latest."""

        def open_gate() -> None:
            self._gate = None
            self.gate_opened = True

        self._gate = threading.Barrier(parties, action=open_gate, timeout=GATE_SECONDS)

    def wait_at_gate(self) -> None:
        gate = self._gate
        if gate is not None:
            try:
                gate.wait()
            except threading.BrokenBarrierError:
                self._gate = None

    def record(self, request: str) -> None:
        self.requests.append(request)


# --- Esplora ------------------------------------------------------------------------------------------------------


class EsploraHandler(_Handler):
    # Served under /api, like blockstream.info/api and mempool.space/api, so the client must keep the base path.
    PREFIX = "/api"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.node.record(f"GET {path}")
        if self.answered_with_failure():
            return
        chain = self.node.chain
        if path == f"{self.PREFIX}/blocks/tip/height":
            # A bare integer in text/plain, not JSON.
            if self.node.failure is Failure.WRONG_SHAPE:
                self.send(200, json.dumps({"height": chain.tip_height}), "application/json")
                return
            self.send(200, str(chain.tip_height), "text/plain")
            return
        stats = re.fullmatch(rf"{self.PREFIX}/address/([a-zA-Z0-9]+)", path)
        if stats is not None:
            self.send(200, json.dumps(self._address_stats(stats.group(1))), "application/json")
            return
        match = re.fullmatch(rf"{self.PREFIX}/address/([a-zA-Z0-9]+)/txs(/chain(?:/([0-9a-f]{{64}}))?)?", path)
        if match is None:
            self.send(404, "Not Found", "text/plain")
            return
        address, chain_only, last_seen = match.groups()
        self.node.wait_at_gate()
        if self.node.failure is Failure.WRONG_SHAPE:
            self.send(200, json.dumps([{"txid": 7, "vout": "none", "status": "confirmed"}]), "application/json")
            return
        paying = chain.transactions_to(address)
        mempool = [transaction for transaction in paying if transaction.block_height is None]
        mined = [transaction for transaction in paying if transaction.block_height is not None]
        if last_seen is not None:
            seen = [transaction.txid for transaction in mined]
            if last_seen not in seen:
                self.send(400, "Invalid hex string", "text/plain")
                return
            mined = mined[seen.index(last_seen) + 1 :]
        page = ([] if chain_only else mempool[:ESPLORA_MEMPOOL_PAGE]) + mined[:ESPLORA_CHAIN_PAGE]
        self.send(200, json.dumps([self._transaction(transaction) for transaction in page]), "application/json")

    def _address_stats(self, address: str) -> dict[str, Any]:
        if self.node.failure is Failure.WRONG_SHAPE:
            return {"address": address, "chain_stats": "unknown"}
        paying = self.node.chain.transactions_to(address)

        def stats(transactions: list[Transaction]) -> dict[str, int]:
            funded = [sats for tx in transactions for to, sats in tx.outputs if to == address]
            # Nothing the tests broadcast spends from an address, so the spent side is always zero.
            return {
                "funded_txo_count": len(funded),
                "funded_txo_sum": sum(funded),
                "spent_txo_count": 0,
                "spent_txo_sum": 0,
                "tx_count": len(transactions),
            }

        return {
            "address": address,
            "chain_stats": stats([tx for tx in paying if tx.block_height is not None]),
            "mempool_stats": stats([tx for tx in paying if tx.block_height is None]),
        }

    def _transaction(self, transaction: Transaction) -> dict[str, Any]:
        chain = self.node.chain
        if transaction.block_height is None:
            status: dict[str, Any] = {"confirmed": False}  # an unconfirmed status carries nothing else
        else:
            status = {
                "confirmed": True,
                "block_height": transaction.block_height,
                "block_hash": hashlib.sha256(f"block{transaction.block_height}".encode()).hexdigest(),
                "block_time": chain.block_time(transaction.block_height),
            }
        return {
            "txid": transaction.txid,
            "version": 2,
            "locktime": 0,
            "vin": [{"txid": "00" * 32, "vout": 0, "is_coinbase": False, "sequence": 4294967293}],
            "vout": [
                {
                    "scriptpubkey": script.address_to_scriptpubkey(address).data.hex(),
                    "scriptpubkey_type": "v0_p2wpkh",
                    "scriptpubkey_address": address,
                    "value": sats,  # satoshi, an integer
                }
                for address, sats in transaction.outputs
            ],
            "size": 222,
            "weight": 561,
            "fee": 1410,
            "status": status,
        }


class EsploraServer(ChainServer):
    handler_class = EsploraHandler

    @property
    def url(self) -> str:
        """What ESPLORA_URL is set to."""
        return f"{self.base_url}{EsploraHandler.PREFIX}"


# --- Bitcoin Core JSON-RPC ----------------------------------------------------------------------------------------


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# Bitcoin Core's error codes (src/rpc/protocol.h).
RPC_MISC_ERROR = -1
RPC_METHOD_NOT_FOUND = -32601
RPC_INVALID_PARAMETER = -8
RPC_INVALID_ADDRESS_OR_KEY = -5
RPC_WALLET_ERROR = -4
RPC_WALLET_NOT_FOUND = -18


def render_json(value: Any) -> str:
    """json.dumps, except that Decimal amounts become JSON numbers with 8 decimals, as bitcoind writes them."""
    if isinstance(value, Decimal):
        return f"{value:.8f}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(key)}: {render_json(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(render_json(item) for item in value) + "]"
    return json.dumps(value)


def sats_to_btc(sats: int) -> Decimal:
    return Decimal(sats) / SATS_PER_BTC


class BitcoindHandler(_Handler):
    def do_POST(self) -> None:
        node = self.node
        assert isinstance(node, BitcoindServer)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.answered_with_failure():
            node.record("(failing)")
            return
        expected = "Basic " + base64.b64encode(f"{node.user}:{node.password}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            # bitcoind answers a bad or missing password with an empty 401, not a JSON-RPC error.
            node.record("401")
            self.send(401, "", "text/html", {"WWW-Authenticate": 'Basic realm="jsonrpc"'})
            return
        request = json.loads(body)
        method, params, request_id = request["method"], list(request.get("params") or []), request.get("id")
        node.record(method)
        if method in node.failing_methods:
            # The node is up but this one call fails, as an import does while the wallet is busy rescanning.
            answer = {"result": None, "error": {"code": RPC_WALLET_ERROR, "message": "Wallet is currently rescanning"}}
            self.send(500, render_json(answer | {"id": request_id}), "application/json")
            return
        if node.failure is Failure.WRONG_SHAPE:
            # A well-formed JSON-RPC envelope whose result has nothing of the documented shape.
            self.send(200, render_json({"result": "unexpected", "error": None, "id": request_id}), "application/json")
            return
        try:
            if self.path not in ("/", f"/wallet/{node.wallet}"):
                raise RpcError(RPC_WALLET_NOT_FOUND, "Requested wallet does not exist or is not loaded")
            result = node.dispatch(method, params)
        except RpcError as error:
            # JSON-RPC 1.0 style: errors come with HTTP 500 (404 for an unknown method) and the error object.
            status = 404 if error.code == RPC_METHOD_NOT_FOUND else 500
            answer = {"result": None, "error": {"code": error.code, "message": error.message}, "id": request_id}
            self.send(status, render_json(answer), "application/json")
            return
        self.send(200, render_json({"result": result, "error": None, "id": request_id}), "application/json")


class BitcoindServer(ChainServer):
    handler_class = BitcoindHandler

    def __init__(self, chain: Chain) -> None:
        super().__init__(chain)
        self.user, self.password, self.wallet = "aitbc", "rpc-password", "aitbc"
        self.failing_methods: set[str] = set()
        # Bitcoin Core before 0.20: gettransaction names the block but not its height.
        self.omits_block_height = False

    def rpc_url(self, *, password: str | None = None, wallet: str | None = None) -> str:
        """What BITCOIND_RPC_URL is set to: credentials and the wallet endpoint in the URL."""
        secret = self.password if password is None else password
        return f"http://{self.user}:{secret}@127.0.0.1:{self.port}/wallet/{wallet or self.wallet}"

    def dispatch(self, method: str, params: list[Any]) -> Any:
        handler = {
            "getblockcount": self.getblockcount,
            "getdescriptorinfo": self.getdescriptorinfo,
            "importdescriptors": self.importdescriptors,
            "listreceivedbyaddress": self.listreceivedbyaddress,
            "gettransaction": self.gettransaction,
        }.get(method)
        if handler is None:
            raise RpcError(RPC_METHOD_NOT_FOUND, "Method not found")
        try:
            return handler(*params)
        except TypeError:
            # bitcoind answers wrong arguments with RPC_MISC_ERROR and the method's help text.
            raise RpcError(RPC_MISC_ERROR, f"{method} ( ... )\nWrong number or type of arguments") from None

    def getblockcount(self) -> int:
        return self.chain.tip_height

    def getdescriptorinfo(self, descriptor: str) -> dict[str, Any]:
        bare = descriptor.split("#", 1)[0]
        if not re.fullmatch(r"addr\([a-zA-Z0-9]+\)", bare):
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, f"'{bare}' is not a valid descriptor function")
        return {
            "descriptor": f"{bare}#{descriptor_checksum(bare)}",
            "checksum": descriptor_checksum(bare),
            "isrange": False,
            "issolvable": False,
            "hasprivatekeys": False,
        }

    def importdescriptors(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Each request succeeds or fails on its own; failures are in the result, not an RPC error.
        return [self._import(request) for request in requests]

    def _import(self, request: dict[str, Any]) -> dict[str, Any]:
        descriptor = str(request.get("desc", ""))
        bare, _, given = descriptor.partition("#")
        if not given:
            return {"success": False, "error": {"code": RPC_INVALID_ADDRESS_OR_KEY, "message": "Missing checksum"}}
        if given != descriptor_checksum(bare):
            message = f"Provided checksum '{given}' does not match computed checksum '{descriptor_checksum(bare)}'"
            return {"success": False, "error": {"code": RPC_INVALID_ADDRESS_OR_KEY, "message": message}}
        timestamp = request.get("timestamp")
        if not (timestamp == "now" or isinstance(timestamp, int)):
            message = "Missing required timestamp field for key"
            return {"success": False, "error": {"code": RPC_INVALID_PARAMETER, "message": message}}
        match = re.fullmatch(r"addr\(([a-zA-Z0-9]+)\)", bare)
        if match is None:
            return {"success": False, "error": {"code": RPC_INVALID_ADDRESS_OR_KEY, "message": "Not an addr()"}}
        self.chain.import_descriptor(descriptor, match.group(1), timestamp)
        return {"success": True}

    def listreceivedbyaddress(
        self,
        minconf: int = 1,
        include_empty: bool = False,
        include_watchonly: bool = True,
        address_filter: str | None = None,
    ) -> list[dict[str, Any]]:
        # Only the wallet's own (imported) addresses exist for bitcoind; any other filter matches nothing.
        addresses = [a for a in self.chain.watched_addresses() if address_filter in (None, a)]
        if address_filter is not None:
            self.wait_at_gate()
        entries = []
        for address in addresses:
            counted = [
                tx
                for tx in self.chain.transactions_to(address)
                if self.chain.wallet_sees(tx, address) and self.chain.confirmations(tx) >= minconf
            ]
            if not counted and not include_empty:
                continue
            entries.append(
                {
                    "involvesWatchonly": True,
                    "address": address,
                    "amount": sats_to_btc(sum(sats for tx in counted for to, sats in tx.outputs if to == address)),
                    # Of the most recent transaction included.
                    "confirmations": min((self.chain.confirmations(tx) for tx in counted), default=0),
                    "label": "aitbc",
                    "txids": [tx.txid for tx in counted],
                }
            )
        return entries

    def gettransaction(self, txid: str, include_watchonly: bool = True, verbose: bool = False) -> dict[str, Any]:
        transaction = self.chain.transaction(txid)
        if transaction is None:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Invalid or non-wallet transaction id")
        mine = [
            (vout, address, sats)
            for vout, (address, sats) in enumerate(transaction.outputs)
            if self.chain.wallet_sees(transaction, address)
        ]
        if not mine:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Invalid or non-wallet transaction id")
        answer: dict[str, Any] = {
            "amount": sats_to_btc(sum(sats for _, _, sats in mine)),
            "confirmations": self.chain.confirmations(transaction),
        }
        if transaction.block_height is not None:
            # Only a mined transaction has block fields.
            answer |= {
                "blockhash": hashlib.sha256(f"block{transaction.block_height}".encode()).hexdigest(),
                **({} if self.omits_block_height else {"blockheight": transaction.block_height}),
                "blockindex": 1,
                "blocktime": self.chain.block_time(transaction.block_height),
            }
        return answer | {
            "txid": txid,
            "walletconflicts": [],
            "time": int(transaction.broadcast_at),
            "timereceived": int(transaction.broadcast_at),
            "bip125-replaceable": "no",
            "details": [
                {
                    "involvesWatchonly": True,
                    "address": address,
                    "category": "receive",
                    "amount": sats_to_btc(sats),
                    "label": "aitbc",
                    "vout": vout,
                }
                for vout, address, sats in mine
            ],
            "hex": "02000000" + "00" * 60,
        }


# --- a price endpoint for update_rate --source ---------------------------------------------------------------------


class PriceHandler(_Handler):
    def do_GET(self) -> None:
        self.node.record(f"GET {self.path}")
        if self.answered_with_failure():
            return
        assert isinstance(self.node, PriceServer)
        self.send(200, json.dumps(self.node.document), "application/json")


class PriceServer(ChainServer):
    """Any JSON price API (CoinGecko-like): GET anything → `document`."""

    handler_class = PriceHandler

    def __init__(self, document: Any) -> None:
        super().__init__(Chain())
        self.document = document

    @property
    def url(self) -> str:
        return f"{self.base_url}/simple/price?ids=bitcoin"
