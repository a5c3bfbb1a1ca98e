"""A small sales database with Chinese data, on SQLite (a file) or PostgreSQL (a fresh schema)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

ORDERS = [
    (1, "华东", "笔记本电脑", 8999.0, 1, 7000.0),
    (2, "华东", "显示器", 1999.0, 2, 1500.0),
    (3, "华北", "笔记本电脑", 9499.0, 3, 7200.0),
    (4, "华南", "键盘", 299.0, 1, 120.0),
    (5, "华北", "显示器", 2199.0, 2, 1600.0),
    (6, "华东", "键盘", 349.0, 3, 150.0),
]
CUSTOMERS = [(1, "张三", "13800000001"), (2, "李四", "13800000002"), (3, "王五", "13800000003")]
EMPLOYEES = [(1, "赵六", 30000.0)]

DDL = [
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, 地区 TEXT, product TEXT, amount REAL, "
    "customer_id INTEGER, cost REAL)",
    "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, phone TEXT)",
    "CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT, salary REAL)",
]

# The allow-list the tests register: cost, phone and the employees table are forbidden.
TABLES = {"orders": ["id", "地区", "product", "amount", "customer_id"], "customers": ["id", "name"]}
VIEWER_FILTERS = {"viewer": {"orders": "地区 = '华东'"}}


def build_sqlite(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        for ddl in DDL:
            conn.execute(ddl)
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", ORDERS)
        conn.executemany("INSERT INTO customers VALUES (?, ?, ?)", CUSTOMERS)
        conn.executemany("INSERT INTO employees VALUES (?, ?, ?)", EMPLOYEES)
    conn.close()
    return path


def build_postgres(url: str) -> None:
    """Create the tables in the database/schema ``url`` points at (search_path in its options)."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True) as conn:
        for ddl in DDL:
            conn.execute(
                ddl.replace("INTEGER PRIMARY KEY", "INTEGER PRIMARY KEY").replace("REAL", "DOUBLE PRECISION")
            )
        conn.execute("COMMENT ON COLUMN orders.amount IS '订单金额（元）'")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO orders VALUES (%s, %s, %s, %s, %s, %s)", ORDERS)
            cur.executemany("INSERT INTO customers VALUES (%s, %s, %s)", CUSTOMERS)
            cur.executemany("INSERT INTO employees VALUES (%s, %s, %s)", EMPLOYEES)
