import aitbc_site.amounts
from aitbc_site.amount_migrations import ConvertToAmountUnits
from decimal import Decimal
from django.db import migrations


class Migration(migrations.Migration):
    """Amounts become whole 10⁻⁸ units in bigint columns, every stored value converted exactly."""

    dependencies = [
        ('jobs', '0003_job_handouts'),
    ]

    operations = [
        ConvertToAmountUnits(
            model_name='job',
            name='price',
            field=aitbc_site.amounts.AmountField(default=Decimal('0')),
        ),
        ConvertToAmountUnits(
            model_name='jobtypeprice',
            name='price',
            field=aitbc_site.amounts.AmountField(),
        ),
    ]
