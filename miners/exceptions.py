from rest_framework import status

from aitbc_site.exceptions import ApplicationError, NotFound


class MinerNotFound(NotFound):
    code = "MINER_NOT_FOUND"
    default_message = "No miner with that id is registered under this API key's owner."


class MinerDisabled(ApplicationError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "MINER_DISABLED"
    default_message = "An operator disabled this miner; it gets no work until it is re-enabled."
