import aitbc_site.amounts
from aitbc_site.amount_migrations import ConvertToAmountUnits
from decimal import Decimal
from django.db import migrations


class Migration(migrations.Migration):
    """Amounts become whole 10⁻⁸ units in bigint columns, every stored value converted exactly."""

    dependencies = [
        ('exchange', '0001_initial'),
    ]

    operations = [
        ConvertToAmountUnits(
            model_name='exchangerate',
            name='btc_to_aitbc',
            field=aitbc_site.amounts.AmountField(),
        ),
        ConvertToAmountUnits(
            model_name='payment',
            name='aitbc_amount',
            field=aitbc_site.amounts.AmountField(),
        ),
        ConvertToAmountUnits(
            model_name='payment',
            name='btc_amount',
            field=aitbc_site.amounts.AmountField(),
        ),
        ConvertToAmountUnits(
            model_name='payment',
            name='credited_aitbc',
            field=aitbc_site.amounts.AmountField(blank=True, null=True),
        ),
        ConvertToAmountUnits(
            model_name='payment',
            name='rate',
            field=aitbc_site.amounts.AmountField(),
        ),
        ConvertToAmountUnits(
            model_name='payment',
            name='received_btc',
            field=aitbc_site.amounts.AmountField(default=Decimal('0')),
        ),
    ]
