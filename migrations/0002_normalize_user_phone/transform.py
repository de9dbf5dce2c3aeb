"""Normalise free-form phone numbers to E.164, one batch (a DataFrame of id, phone) at a time."""

import pandas as pd

DEFAULT_COUNTRY_CODE = "1"


def transform(df: pd.DataFrame) -> pd.DataFrame:
    """Return id and phone_e164: '+' and 8..15 digits, or None when the input is not a phone number."""
    raw = df["phone"].astype("string")
    international = raw.str.strip().str.startswith("+") | raw.str.strip().str.startswith("00")
    digits = raw.str.replace(r"\D", "", regex=True).str.replace(r"^00", "", regex=True)
    national = digits.where(international, digits.str.replace(r"^1?(\d{10})$", DEFAULT_COUNTRY_CODE + r"\1",
                                                              regex=True))
    valid = national.str.fullmatch(r"[1-9]\d{7,14}").fillna(False).astype(bool)
    e164 = ("+" + national).where(valid, None)
    return pd.DataFrame({"id": df["id"], "phone_e164": e164.astype(object).where(e164.notna(), None)})
