"""Packaging for the shop CRM: `pip install -e .[test]` gives the `crm` command and the test tools."""
from setuptools import find_packages, setup

setup(
    name="shop-crm",
    version="0.1.0",
    description="客户关系管理及数据分析系统 — customers and stored-value member cards for small shops",
    python_requires=">=3.11",
    packages=find_packages(include=["crm", "crm.*"]),
    include_package_data=True,
    install_requires=[
        "Flask>=3.0,<4",
        "Flask-Login>=0.6.3,<0.7",
        "Flask-WTF>=1.2,<2",
        "peewee>=4.5,<5",
        "PyMySQL>=1.1,<2",
        "waitress>=3.0,<4",
        "openpyxl>=3.1,<4",
        "fpdf2>=2.8,<3",
        "bcrypt>=4.1,<6",
        "APScheduler>=3.10,<4",
        "jsonschema>=4.18,<5",
        "tomlkit>=0.12,<1",
        # The API's typed declarations: inputs, answers and the OpenAPI document (crm/api/declare.py).
        "pydantic>=2.11,<3",
    ],
    # Ranges for people who pip install it; the exact set the suite was last green with is
    # constraints.txt (pip install -c constraints.txt ...; refreshed by `bash .ci/lock`).
    extras_require={
        "test": [
            # pytest 9 breaks schemathesis 4's pytest plugin ('Function' has no '_nodeid').
            "pytest>=8.4,<9",
            # Two workers, one per database (pytest.ini): the suite in about half the time.
            "pytest-xdist>=3.6,<4",
            "playwright>=1.45",
            "hypothesis>=6.100",
            "schemathesis>=4.3,<5",
            "ruff>=0.6",
            # The generated-client test (tests/test_generated_client.py) builds a client from the
            # served document with it.
            "openapi-python-client>=0.29,<0.30",
            # ...and pip-installs that client offline: Python 3.11's bundled setuptools needs
            # wheel for bdist_wheel.
            "wheel>=0.43",
        ],
    },
    entry_points={"console_scripts": ["crm=crm.cli:main"]},
)
