from aitbc_site.exceptions import NotFound


class MinerNotFound(NotFound):
    code = "MINER_NOT_FOUND"
    default_message = "No miner with that id is registered under this API key's owner."
