"""Assets with dependencies (raw_orders → cleaned_orders → order_report) and a partitioned asset
(daily_sales, one partition per region) that reads cleaned_orders."""

from dagster import AssetExecutionContext, Definitions, StaticPartitionsDefinition, asset

regions = StaticPartitionsDefinition(["eu", "us", "apac"])


@asset
def raw_orders() -> list[dict]:
    return [{"id": i, "amount": 10 * i, "region": ("eu", "us", "apac")[i % 3]} for i in range(1, 7)]


@asset
def cleaned_orders(raw_orders: list[dict]) -> list[dict]:
    return [o for o in raw_orders if o["amount"] > 10]


@asset
def order_report(cleaned_orders: list[dict]) -> dict:
    return {"orders": len(cleaned_orders), "total": sum(o["amount"] for o in cleaned_orders)}


@asset(partitions_def=regions)
def daily_sales(context: AssetExecutionContext) -> int:
    return len(context.partition_key)


defs = Definitions(assets=[raw_orders, cleaned_orders, order_report, daily_sales])
