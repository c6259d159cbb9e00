"""Declarative base and the column types every table shares."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from sqlalchemy import BigInteger, DateTime, Dialect, MetaData, Numeric, String, func
from sqlalchemy.orm import DeclarativeBase, mapped_column
from sqlalchemy.types import TypeDecorator


class WeiType(TypeDecorator[int]):
    """NUMERIC(78,0) in SQL, `int` in Python: exact integers up to 2^256. A float is refused
    rather than rounded."""

    impl = Numeric(78, 0)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, float | bool):
            raise TypeError(f"wei amounts are integers, got {value!r}")
        if isinstance(value, Decimal) and value != value.to_integral_value():
            raise TypeError(f"wei amounts are integers, got {value!r}")
        return Decimal(int(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


Wei = WeiType()
Address = String(42)
Hash32 = String(66)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


BigPK = Annotated[int, mapped_column(BigInteger, primary_key=True, autoincrement=True)]
CreatedAt = Annotated[
    datetime, mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
]


def one_of(column: str, values: type[StrEnum]) -> str:
    """A CHECK clause: `column` holds one of the enum's values."""
    listed = ",".join(f"'{v.value}'" for v in values)
    return f"{column} IN ({listed})"
