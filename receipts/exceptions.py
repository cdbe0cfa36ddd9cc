from aitbc_site.exceptions import NotFound


class ReceiptNotFound(NotFound):
    code = "RECEIPT_NOT_FOUND"
    default_message = "No receipt with that id is visible to this API key's owner."
