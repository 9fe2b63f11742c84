"Fixtures shared by the compress, tune and averaging tests: a small token-shard corpus, a training config, client teardown."
from pathlib import Path

import pandas as pd
import pytest


def shut(client):
    "Close a client and its cluster; a slow worker shutdown on a loaded machine is not what these tests check."
    from llmwork.backend import close_client
    close_client(client)


@pytest.fixture(scope="session")
def token_dirs(tmp_path_factory):
    "Byte-token shards of 3,000 Debian descriptions (4 shards), and the '{rank}' template of them dealt over 2 ranks."
    import dask
    import dask.dataframe as dd
    from llmwork.io import sample_corpus_path
    from llmwork.models import ByteTokenizer, pack_tokens
    from llmwork.train import split_token_shards
    root = tmp_path_factory.mktemp("tokens")
    docs = pd.read_json(sample_corpus_path(), lines=True, nrows=3000)[["text"]]
    with dask.config.set({"scheduler": "synchronous", "dataframe.shuffle.method": "tasks"}):
        pack_tokens(dd.from_pandas(docs, npartitions=4), ByteTokenizer(), root / "all")
    return root / "all", split_token_shards(root / "all", root / "local", 2)


def small_config(data, out, **kw):
    "A one-layer GPT's TrainConfig on `data`: plain numbers (no warmup, decay or clipping) so runs compare exactly."
    from llmwork.train import TrainConfig
    base = dict(data=str(data), out_dir=str(out), model="gpt-tiny", device="cpu", threads=1,
                model_overrides=dict(n_layer=1, n_head=2, n_embd=32, block_size=32), batch_size=8, steps=8, lr=0.05,
                warmup_steps=0, weight_decay=0.0, grad_clip=0.0, eval_every=0, checkpoint_every=0)
    return TrainConfig(**{**base, **kw})


@pytest.fixture
def threads_client():
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        yield client
