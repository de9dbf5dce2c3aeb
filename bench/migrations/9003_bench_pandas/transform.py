"""d_new = abalance + aid, computed in pandas (vectorised)."""

import pandas as pd


def transform(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"aid": df["aid"], "d_new": df["abalance"].astype("int64") + df["aid"].astype("int64")})
