from rest_framework import status

from aitbc_site.exceptions import ApplicationError, Conflict, NotFound


class MinerNotFound(NotFound):
    code = "MINER_NOT_FOUND"
    default_message = "No miner with that id is registered under this API key's owner."


class MinerDisabled(ApplicationError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "MINER_DISABLED"
    default_message = "An operator disabled this miner; it gets no work until it is re-enabled."


class MinerNameTaken(Conflict):
    code = "MINER_NAME_TAKEN"
    default_message = "Another miner of this API key's owner already has that name."
