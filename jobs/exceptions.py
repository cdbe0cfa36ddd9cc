from aitbc_site.exceptions import ApplicationError, Conflict, NotFound


class JobNotFound(NotFound):
    code = "JOB_NOT_FOUND"
    default_message = "No job with that id belongs to this API key's owner."


class InvalidJobState(Conflict):
    code = "INVALID_JOB_STATE"
    default_message = "The job's state does not allow this."


class IdempotencyKeyReused(Conflict):
    code = "IDEMPOTENCY_KEY_REUSED"
    default_message = "This Idempotency-Key was already used with a different request body."


class JobCancelled(Conflict):
    code = "JOB_CANCELLED"
    default_message = "The job was cancelled; stop working on it."


class LeaseExpired(Conflict):
    code = "LEASE_EXPIRED"
    default_message = "This miner's lease on the job expired and the job went to another miner."


class PriceAboveMax(ApplicationError):
    code = "PRICE_ABOVE_MAX"
    default_message = "The job's price is above the max_price you sent."


class OutputOutOfOrder(Conflict):
    code = "OUTPUT_OUT_OF_ORDER"
    default_message = "The chunks skip ahead of the next seq this attempt's output expects."


class OutputTooLarge(ApplicationError):
    status_code = 413
    code = "OUTPUT_TOO_LARGE"
    default_message = "The job's partial output would exceed JOB_OUTPUT_MAX_BYTES."


class OutputMismatch(Conflict):
    code = "OUTPUT_MISMATCH"
    default_message = "The result's output differs from the output chunks this attempt posted."


class InvalidStreamPosition(ApplicationError):
    code = "INVALID_LAST_EVENT_ID"
    default_message = "Last-Event-ID names no event of this job's stream; reconnect without it to start over."
