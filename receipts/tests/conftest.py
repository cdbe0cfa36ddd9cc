from typing import Any

import pytest

from receipts.tests.factories import RFC8032_TEST1_SEED


@pytest.fixture(autouse=True)
def _rfc8032_test1_signing_key(settings: Any) -> None:
    # pytest.ini sets this key only by default; the receipts tests pin it so their expected key ids always hold.
    settings.RECEIPT_SIGNING_KEY = RFC8032_TEST1_SEED
    settings.RECEIPT_RETIRED_PUBLIC_KEYS = []
