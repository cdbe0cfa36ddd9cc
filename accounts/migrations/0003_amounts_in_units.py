import aitbc_site.amounts
from aitbc_site.amount_migrations import ConvertToAmountUnits
from decimal import Decimal
from django.db import migrations


class Migration(migrations.Migration):
    """Amounts become whole 10⁻⁸ units in bigint columns, every stored value converted exactly."""

    dependencies = [
        ('accounts', '0002_loginchallenge_posting_ledgeraccount_ledgerentry_and_more'),
    ]

    operations = [
        ConvertToAmountUnits(
            model_name='ledgeraccount',
            name='balance',
            field=aitbc_site.amounts.AmountField(default=Decimal('0')),
        ),
        ConvertToAmountUnits(
            model_name='ledgerentry',
            name='amount',
            field=aitbc_site.amounts.AmountField(),
        ),
    ]
