"""DINOP feature tensors from any canonical sales frame (`training.schemas.SalesData`).

Why a separate module: the mapping of a sales panel onto the paper's five factor groups is
the part a reviewer has to check. The per-item transforms themselves live in
`service.servables.dinop_features`, shared with serving so the two cannot drift apart.

Mapping (paper section 3 -> sales panel):
- item = one (region, category) series; a promotion day = a period whose `day_type` is not
  "ordinary" (on Walmart: the holiday weeks);
- pre-sale period = the `presale_steps` periods before the promotion day; static window =
  the `static_steps` periods before the pre-sale period (paper: 90 days; 13 weeks here);
- DIS_t = the item's sales that period (signed log) + the item-sales external columns
  (markdowns/promotions/discounts, signed log, 0 when missing) + a "markdown known" flag +
  the period's festival flag;
- DU_t = the remaining external columns (shopper context: CPI, unemployment, temperature,
  fuel price), z-scored with training statistics;
- SU = DU averaged over the static window;
- SII = one-hot region, one-hot category, the region's static columns (z-scored numeric,
  one-hot text) and the promotion type;
- SIS = the static window's sales (signed log) with mean, std, max and coverage;
- labels: GMV = the item's sales on the promotion day (trained as the change from the last
  pre-sale period's sales, or with `--gmv-target level` as the sales themselves, in units
  of the item's usual level, the static window's mean |sales|: see
  `Featurizer.gmv_target`); BSP by
  eq. 1 over all items of the same promotion day; SS by eq. 2 with industry = category.

NOTE (labels): negative sales (returns) are clipped at 0 for the shares of eqs. 1-2; the
GMV label keeps the signed value.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from service.actions import ACTIONS
from service.servables.dinop_features import DinopFeatures as Featurizer
from training.schemas import SalesData

ORDINARY = "ordinary"
# External columns whose name contains one of these are item-sales data (DIS); the rest
# describe the shoppers (DU). Matched case-insensitively.
ITEM_SALES_HINTS: tuple[str, ...] = ("markdown", "promo", "discount", "coupon")
ITEM_SALES_NAMES: frozenset[str] = frozenset({"price", "sell_price", "unit_price"})


def bsp_labels(gmv: np.ndarray) -> np.ndarray:
    """Eq. 1: 1 if the GMV of all items selling at least as much as i is < 20% of the total."""
    g = np.clip(np.asarray(gmv, dtype=np.float64), 0.0, None)
    total = g.sum()
    if total <= 0:
        return np.zeros(len(g), dtype=np.int64)
    order = np.argsort(-g, kind="stable")
    sorted_g = g[order]
    # sum over {j : G_j >= G_i}: ties included, so take the cumulative sum at the last tie
    cum = np.cumsum(sorted_g)
    last_of_tie = np.searchsorted(-sorted_g, -sorted_g, side="right") - 1
    share = np.empty(len(g))
    share[order] = cum[last_of_tie] / total
    return (share < 0.2).astype(np.int64)


def category_shares(values: np.ndarray, industry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(share of the industry total, eq. 2's cumulative share) per item; 0 / 1 if empty."""
    g = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, None)
    share = np.zeros(len(g))
    cum_share = np.ones(len(g))
    for k in np.unique(industry):
        idx = np.flatnonzero(industry == k)
        total = g[idx].sum()
        if total <= 0:
            continue
        gk = g[idx]
        order = np.argsort(-gk, kind="stable")
        sorted_g = gk[order]
        cum = np.cumsum(sorted_g)
        last_of_tie = np.searchsorted(-sorted_g, -sorted_g, side="right") - 1
        cs = np.empty(len(gk))
        cs[order] = cum[last_of_tie] / total
        share[idx] = gk / total
        cum_share[idx] = cs
    return share, cum_share


def ss_labels(gmv: np.ndarray, industry: np.ndarray) -> np.ndarray:
    """Eq. 2: slot R in 1..10 with (R-1)/10 < cumulative share within the industry <= R/10.

    Returned 0-based (0..9) for the softmax; slot 0 is the best seller.
    """
    g = np.clip(np.asarray(gmv, dtype=np.float64), 0.0, None)
    out = np.full(len(g), 9, dtype=np.int64)
    for k in np.unique(industry):
        idx = np.flatnonzero(industry == k)
        total = g[idx].sum()
        if total <= 0:
            continue
        gk = g[idx]
        order = np.argsort(-gk, kind="stable")
        sorted_g = gk[order]
        cum = np.cumsum(sorted_g)
        last_of_tie = np.searchsorted(-sorted_g, -sorted_g, side="right") - 1
        share = np.empty(len(gk))
        share[order] = cum[last_of_tie] / total
        slot = np.ceil(np.round(share * 10, 9)).astype(np.int64)
        out[idx] = np.clip(slot, 1, 10) - 1
    return out


@dataclass
class PromoSet:
    """Instances (item x promotion day) with the paper's factor groups."""

    dis: np.ndarray  # [N, T, Ddis]
    du: np.ndarray  # [N, T, Ddu]  (raw; `Featurizer.normalise` z-scores)
    su: np.ndarray  # [N, Ddu]
    sii: np.ndarray  # [N, Dsii]
    sis: np.ndarray  # [N, Dsis]
    mask: np.ndarray  # [N, T] 1 = observed pre-sale period
    gmv: np.ndarray  # [N] currency units
    bsp: np.ndarray  # [N] 0/1, eq. 1
    ss: np.ndarray  # [N] 0..9, eq. 2
    region: np.ndarray  # [N] str
    category: np.ndarray  # [N] str
    promo_date: np.ndarray  # [N] datetime64
    promo_type: np.ndarray  # [N] str
    last_presale_sales: np.ndarray  # [N] for the naive baseline
    scale: np.ndarray  # [N] mean |sales| over the static window (the GMV target's unit)

    def __len__(self) -> int:
        return len(self.gmv)

    def subset(self, idx: np.ndarray) -> PromoSet:
        return PromoSet(**{k: v[idx] for k, v in self.__dict__.items()})

    @property
    def years(self) -> np.ndarray:
        return pd.DatetimeIndex(self.promo_date).year.to_numpy()


def _split_external(columns: Sequence[str]) -> tuple[list[str], list[str]]:
    dis = [
        c
        for c in columns
        if any(h in c.lower() for h in ITEM_SALES_HINTS) or c.lower() in ITEM_SALES_NAMES
    ]
    du = [c for c in columns if c not in dis]
    return dis, du


def build_promo_set(
    data: SalesData,
    presale_steps: int = 4,
    static_steps: int = 13,
    featurizer: Featurizer | None = None,
) -> tuple[PromoSet, Featurizer]:
    """All (item, promotion day) instances of `data` with a full pre-sale + static window.

    A given `featurizer` (from training) fixes vocabularies; else one is built from `data`
    (its statistics are fitted later on the training split with `fit_statistics`).
    """
    frame = data.sales.copy()
    if frame.empty:
        raise ValueError("sales frame is empty")
    frame["region"] = frame["region"].astype(str)
    frame["category"] = frame["category"].astype(str)
    frame["date"] = pd.to_datetime(frame["date"])
    dates = np.array(sorted(frame["date"].unique()), dtype="datetime64[ns]")
    t_of = {d: i for i, d in enumerate(dates)}
    frame["_t"] = frame["date"].map(lambda d: t_of[np.datetime64(d, "ns")])
    ext = [c for c in data.external_columns if c in frame.columns]
    static = data.static.copy()
    if "region" in static.columns:
        static["region"] = static["region"].astype(str)
    if featurizer is None:
        dis_cols, du_cols = _split_external(ext)
        text_cols = [
            c
            for c in static.columns
            if c != "region"
            and c not in data.static_columns
            and not pd.api.types.is_numeric_dtype(static[c])
        ]
        featurizer = Featurizer(
            presale_steps=presale_steps,
            static_steps=static_steps,
            regions=sorted(frame["region"].unique()),
            categories=sorted(frame["category"].unique()),
            promo_types=sorted(set(frame["day_type"].astype(str)) - {ORDINARY}),
            dis_columns=dis_cols,
            du_columns=du_cols,
            static_numeric=[c for c in data.static_columns if c in static.columns],
            static_text={c: sorted(static[c].astype(str).unique()) for c in text_cols},
        )
        if featurizer.static_numeric:
            # Static profiles are attributes, not outcomes: statistics over all regions.
            vals = static[featurizer.static_numeric].to_numpy(np.float64)
            std = np.nanstd(vals, axis=0)
            featurizer.static_mean = np.nanmean(vals, axis=0).tolist()
            featurizer.static_std = np.where(std > 0, std, 1.0).tolist()
    f = featurizer
    T, S = f.presale_steps, f.static_steps
    n_t = len(dates)

    # day type per period (most common label among the rows of that date)
    day_type = frame.groupby("_t")["day_type"].agg(lambda s: s.astype(str).mode().iloc[0])
    dtype_arr = np.array([ORDINARY] * n_t, dtype=object)
    dtype_arr[day_type.index.to_numpy()] = day_type.to_numpy()

    items = frame[["region", "category"]].drop_duplicates().sort_values(["region", "category"])
    item_of = {
        (r, c): i for i, (r, c) in enumerate(zip(items["region"], items["category"], strict=True))
    }
    sales = np.full((len(items), n_t), np.nan)
    idx = np.array(
        [item_of[(r, c)] for r, c in zip(frame["region"], frame["category"], strict=True)]
    )
    sales[idx, frame["_t"].to_numpy()] = frame["sales"].to_numpy(np.float64)
    cols = f.dis_columns + f.du_columns
    # External factors per item and period: store-level ones (Walmart) repeat over the
    # store's departments, item-level ones (a category's price) differ.
    ext_arr = np.full((len(items), n_t, len(cols)), np.nan)
    for k, c in enumerate(cols):
        if c in frame.columns:
            ext_arr[idx, frame["_t"].to_numpy(), k] = frame[c].to_numpy(np.float64)
    n_dis = len(f.dis_columns)
    # DU: carry the last known shopper context forward (published with a lag), then back.
    du_raw = ext_arr[:, :, n_dis:]
    if du_raw.shape[-1]:
        du_df = [pd.DataFrame(du_raw[i]).ffill().bfill().to_numpy() for i in range(len(du_raw))]
        du_raw = np.stack(du_df)
    static_by_region = (
        static.set_index("region").to_dict(orient="index") if "region" in static.columns else {}
    )

    rows: dict[str, list[Any]] = {k: [] for k in PromoSet.__dataclass_fields__}
    promo_ts = [t for t in range(n_t) if dtype_arr[t] != ORDINARY and t - T - S >= 0]
    item_regions = items["region"].to_numpy()
    item_cats = items["category"].to_numpy()
    for p in promo_ts:
        label = sales[:, p]
        pre = sales[:, p - T : p]
        ok = ~np.isnan(label) & (~np.isnan(pre)).any(axis=1)
        members = np.flatnonzero(ok)
        if len(members) == 0:
            continue
        gmv = label[members]
        with warnings.catch_warnings():  # an item without static-window sales -> NaN -> 0
            warnings.simplefilter("ignore", RuntimeWarning)
            static_mean = np.nanmean(sales[:, p - T - S : p - T], axis=1)
        share, cum_share = category_shares(static_mean[members], item_cats[members])
        bsp = bsp_labels(gmv)
        ss = ss_labels(gmv, item_cats[members])
        for j, i in enumerate(members):
            dis = np.stack(
                [
                    f.dis_row(
                        0.0 if np.isnan(sales[i, t]) else sales[i, t],
                        ext_arr[i, t, :n_dis],
                        dtype_arr[t] != ORDINARY,
                    )
                    for t in range(p - T, p)
                ]
            )
            du = du_raw[i, p - T : p] if du_raw.shape[-1] else np.zeros((T, 1))
            su = (
                np.nanmean(du_raw[i, p - T - S : p - T], axis=0)
                if du_raw.shape[-1]
                else np.zeros(1)
            )
            rows["dis"].append(dis)
            rows["du"].append(du)
            rows["su"].append(su)
            rows["sii"].append(
                f.sii_row(
                    item_regions[i],
                    item_cats[i],
                    static_by_region.get(item_regions[i], {}),
                    str(dtype_arr[p]),
                )
            )
            rows["sis"].append(f.sis_row(sales[i, p - T - S : p - T], share[j], cum_share[j]))
            rows["mask"].append((~np.isnan(sales[i, p - T : p])).astype(np.float64))
            rows["gmv"].append(gmv[j])
            rows["bsp"].append(bsp[j])
            rows["ss"].append(ss[j])
            rows["region"].append(item_regions[i])
            rows["category"].append(item_cats[i])
            rows["promo_date"].append(dates[p])
            rows["promo_type"].append(str(dtype_arr[p]))
            last = pre[i][~np.isnan(pre[i])]
            rows["last_presale_sales"].append(float(last[-1]) if len(last) else 0.0)
            usual = np.abs(sales[i, p - T - S : p - T])
            rows["scale"].append(float(np.nanmean(usual)) if (~np.isnan(usual)).any() else 0.0)
    if not rows["gmv"]:
        raise ValueError(
            f"no promotion day has {T} pre-sale + {S} static periods before it in the data"
        )
    arrays = {k: np.asarray(v) for k, v in rows.items()}
    for name in ("dis", "du", "su", "sii", "sis", "mask", "gmv"):
        arrays[name] = arrays[name].astype(np.float32)
    return PromoSet(**arrays), f


def fit_statistics(f: Featurizer, train: PromoSet) -> None:
    """Z-score statistics from the training split only (DU and GMV)."""
    if f.du_columns:
        flat = train.du.reshape(-1, train.du.shape[-1]).astype(np.float64)
        f.du_mean = np.nanmean(flat, axis=0).tolist()
        f.du_std = np.where(np.nanstd(flat, axis=0) > 0, np.nanstd(flat, axis=0), 1.0).tolist()
    positive = train.scale[train.scale > 0]
    f.scale_floor = float(np.percentile(positive, 10)) if len(positive) else 1.0
    f.gmv_mean, f.gmv_std = 0.0, 1.0
    target = f.gmv_target(train.gmv.astype(np.float64), train.scale, train.last_presale_sales)
    f.gmv_mean = float(target.mean())
    f.gmv_std = float(target.std() or 1.0)


def tensors(f: Featurizer, ps: PromoSet) -> dict[str, np.ndarray]:
    """Model inputs and labels as float32 / int64 arrays (DU and SU z-scored)."""
    return {
        "dis": ps.dis.astype(np.float32),
        "du": f.du_norm(ps.du.astype(np.float64)).astype(np.float32),
        "su": f.du_norm(ps.su.astype(np.float64)).astype(np.float32),
        "sii": ps.sii.astype(np.float32),
        "sis": ps.sis.astype(np.float32),
        "mask": ps.mask.astype(np.float32),
        "gmv": f.gmv_target(ps.gmv.astype(np.float64), ps.scale, ps.last_presale_sales).astype(
            np.float32
        ),
        "bsp": ps.bsp.astype(np.float32),
        "ss": ps.ss.astype(np.int64),
    }


# ---- BOP on an event log (buy-through-promotion) ------------------------------------------
CATEGORY_BUCKETS = 32


@dataclass
class BopSet:
    """(user, item) pairs that met in the pre-sale days; label = bought on the promotion day.

    Item factors follow section 3 on an event log: DIS_t = the item's daily counts per
    action (log1p); DU_t = the mean static activity profile of the users who touched the
    item that day; SU = the same over the users who touched it in the static window;
    SII = its category (hashed one-hot); SIS = its static-window counts and distinct users.
    User features (Figure 4(d)): the user's static and pre-sale counts per action, and the
    user's pre-sale counts on this item and on its category.
    """

    dis: np.ndarray  # [N, T, 4]
    du: np.ndarray  # [N, T, 4]
    su: np.ndarray  # [N, 4]
    sii: np.ndarray  # [N, 32]
    sis: np.ndarray  # [N, 5]
    mask: np.ndarray  # [N, T]
    user: np.ndarray  # [N, 16]
    bop: np.ndarray  # [N] 0/1
    user_id: np.ndarray  # [N] str
    item_id: np.ndarray  # [N] str

    def __len__(self) -> int:
        return len(self.bop)

    def subset(self, idx: np.ndarray) -> BopSet:
        return BopSet(**{k: v[idx] for k, v in self.__dict__.items()})

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            k: (v.astype(np.float32))
            for k, v in self.__dict__.items()
            if k not in ("user_id", "item_id")
        }


def _counts(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """log1p counts per action, one column per action in ACTIONS."""
    table = frame.groupby([*by, "action"]).size().unstack("action", fill_value=0)
    table = table.reindex(columns=list(ACTIONS), fill_value=0)
    return np.log1p(table.astype(np.float64))


def build_bop_set(
    events: pd.DataFrame,
    presale_days: int = 10,
    static_days: int = 90,
    promo_date: pd.Timestamp | None = None,
) -> tuple[BopSet, pd.Timestamp]:
    """BOP pairs of an event log around a promotion day (default: the log's last day)."""
    e = events[["user_id", "item_id", "category_id", "action", "ts"]].copy()
    for col in ("user_id", "item_id", "category_id", "action"):
        e[col] = e[col].astype(str)
    e["day"] = pd.to_datetime(e["ts"], unit="s").dt.normalize()
    promo = pd.Timestamp(promo_date).normalize() if promo_date is not None else e["day"].max()
    pre_start = promo - pd.Timedelta(days=presale_days)
    st_start = pre_start - pd.Timedelta(days=static_days)
    pre = e[(e["day"] >= pre_start) & (e["day"] < promo)]
    static = e[(e["day"] >= st_start) & (e["day"] < pre_start)]
    if pre.empty:
        raise ValueError(f"no events in the {presale_days} days before {promo.date()}")
    bought = e[(e["day"] == promo) & (e["action"] == "purchase")]
    positive = set(zip(bought["user_id"], bought["item_id"], strict=True))
    pairs = pre[["user_id", "item_id"]].drop_duplicates().sort_values(["user_id", "item_id"])

    user_static = _counts(static, ["user_id"])
    user_pre = _counts(pre, ["user_id"])
    ui_pre = _counts(pre, ["user_id", "item_id"])
    item_cat = e.drop_duplicates("item_id").set_index("item_id")["category_id"]
    pre_c = pre.assign(cat=pre["item_id"].map(item_cat))
    uc_pre = _counts(pre_c, ["user_id", "cat"])
    item_day = _counts(pre, ["item_id", "day"])
    item_static = _counts(static, ["item_id"])
    item_static_users = np.log1p(static.groupby("item_id")["user_id"].nunique())

    def profile(users: pd.Series) -> np.ndarray:
        known = [u for u in users.unique() if u in user_static.index]
        if not known:
            return np.zeros(len(ACTIONS))
        return np.asarray(user_static.loc[known].mean(axis=0), dtype=np.float64)

    days = [pre_start + pd.Timedelta(days=k) for k in range(presale_days)]
    item_rows: dict[str, dict[str, np.ndarray]] = {}
    pre_by_item = dict(tuple(pre.groupby("item_id")))
    static_by_item = dict(tuple(static.groupby("item_id")))
    zero = np.zeros(len(ACTIONS))
    for item in pairs["item_id"].unique():
        ip = pre_by_item[item]
        dis = np.stack(
            [
                np.asarray(item_day.loc[(item, d)]) if (item, d) in item_day.index else zero
                for d in days
            ]
        )
        du = np.stack([profile(ip.loc[ip["day"] == d, "user_id"]) for d in days])
        mask = np.array([float((item, d) in item_day.index) for d in days])
        st = static_by_item.get(item)
        su = profile(st["user_id"]) if st is not None else zero
        sii = np.zeros(CATEGORY_BUCKETS)
        sii[_bucket(str(item_cat.get(item, "")))] = 1.0
        sis = np.concatenate(
            [
                np.asarray(item_static.loc[item]) if item in item_static.index else zero,
                [float(item_static_users.get(item, 0.0))],
            ]
        )
        item_rows[item] = {"dis": dis, "du": du, "mask": mask, "su": su, "sii": sii, "sis": sis}

    rows: dict[str, list[Any]] = {k: [] for k in BopSet.__dataclass_fields__}
    for user, item in zip(pairs["user_id"], pairs["item_id"], strict=True):
        feats = item_rows[item]
        for k in ("dis", "du", "mask", "su", "sii", "sis"):
            rows[k].append(feats[k])
        cat = item_cat.get(item, "")

        def get(table: pd.DataFrame, key: Any) -> np.ndarray:
            return np.asarray(table.loc[key]) if key in table.index else zero

        rows["user"].append(
            np.concatenate(
                [
                    get(user_static, user),
                    get(user_pre, user),
                    get(ui_pre, (user, item)),
                    get(uc_pre, (user, cat)),
                ]
            )
        )
        rows["bop"].append(float((user, item) in positive))
        rows["user_id"].append(user)
        rows["item_id"].append(item)
    return BopSet(**{k: np.asarray(v) for k, v in rows.items()}), promo


def _bucket(text: str) -> int:
    """Stable hash bucket (Python's hash() is salted per process)."""
    import zlib

    return zlib.crc32(text.encode()) % CATEGORY_BUCKETS
