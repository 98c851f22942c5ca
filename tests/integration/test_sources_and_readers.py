"""Every model source and reader kind through SQL registration, the real worker and the feature cache.

The module has its own database and worker, so its tasks and registrations do not
disturb the counts other tests make. For each source, the features the worker stores in
shift.features equal, within float tolerance, what the library computes directly on the
same preprocessed inputs; for each reader kind, the registered count, the class list and
the labels the worker stores follow the data's own order.
"""

import json

import numpy as np
import psycopg
import pytest
import torch

from gpu_daemon import preprocess as prep
from tests import artifacts
from shift_cli.testbed import Database, WorkerProcess

# tensorflow-hub 0.16.1 imports pkg_resources
pytestmark = pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")
ATOL = 1e-4


HAS_TF = artifacts.has_tensorflow()
needs_tf = pytest.mark.skipif(not HAS_TF, reason="tensorflow, tensorflow-hub and tensorflow-datasets are not "
                                                 "installed: pip install 'shift[tf]'")


@pytest.fixture(scope="module")
def env(cluster):
    """A database, a worker, and the artifacts of every source and reader kind, readable by the server."""
    base = cluster.home / "sources"
    base.mkdir(exist_ok=True)
    a = dict(base=base)
    a["vit"] = artifacts.hf_vision(base / "vit")
    a["bert"] = artifacts.hf_text(base / "bert")
    a["net"] = artifacts.torch_net()
    a["onnx"] = artifacts.onnx_export(base / "net.onnx", a["net"])
    torch.manual_seed(0)
    a["mlp"] = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).eval()
    a["mlp_onnx"] = artifacts.onnx_export_tabular(base / "mlp.onnx", a["mlp"], 6)
    a["x_img"] = artifacts.images(12, size=32)
    a["y_img"] = np.array([2, 0, 1] * 4)
    np.save(base / "x_img.npy", a["x_img"])
    np.save(base / "y_img.npy", a["y_img"])
    a["folder"] = artifacts.image_folder(base / "folder")
    a["tab"] = np.random.default_rng(3).normal(size=(9, 6)).astype(np.float32)
    a["tab_y"] = np.array(["lo", "hi", "mid"] * 3)
    np.save(base / "x_tab.npy", a["tab"])
    np.save(base / "y_tab.npy", a["tab_y"])
    (base / "tab.csv").write_text("f0,f1,f2,f3,f4,f5,label\n" + "".join(
        ",".join("%r" % float(v) for v in row) + ",%d\n" % (i % 2) for i, row in enumerate(a["tab"])))
    (base / "text.csv").write_text("sentence,label\n" + "".join(
        '"%s",%s\n' % (t, ["pos", "neg"][i % 2]) for i, t in enumerate(artifacts.TEXTS)))
    (base / "img").mkdir(exist_ok=True)
    for i, img in enumerate(a["x_img"][:5]):
        (base / "img" / ("%d.png" % i)).write_bytes(artifacts.png_bytes(img))
    (base / "images.csv").write_text("path,label\n" + "".join("img/%d.png,%s\n" % (i, "ab"[i % 2]) for i in range(5)))
    a["hf_images"] = artifacts.hf_dataset(base / "hf_images")
    a["hf_texts"] = artifacts.hf_dataset(base / "hf_texts", kind="text")
    if HAS_TF:
        a["tf"] = artifacts.tf_saved_model(base / "tf_sm")
        a["tfds"] = artifacts.tfds_dataset(base / "tfds")
    artifacts.readable(base)

    with Database(cluster, "shift_sources") as database:
        worker = WorkerProcess(database.worker_dsn, cluster.home / "worker-sources.log", "sources-worker").wait_ready()
        try:
            with database.connect() as conn:
                conn.execute("CREATE TABLE public.sentences (id integer PRIMARY KEY, body text, label text)")
                for i, t in enumerate(reversed(artifacts.TEXTS)):
                    conn.execute("INSERT INTO public.sentences VALUES (%s, %s, %s)", (i, t, "neg" if i % 3 else "pos"))
            a["db"] = database
            a["describes"] = _worker_describes(database)
            yield a
        finally:
            worker.stop()


def _worker_describes(database):
    """Whether this worker runs describe tasks (registration of Hugging Face dataset readers needs them)."""
    with database.connect() as conn:
        conn.execute("SELECT shift.register_model('probe_describe', 'torchscript', '/nonexistent/probe.pt')")
        try:
            conn.execute("SELECT * FROM shift.describe_models(ARRAY['probe_describe'])")
            return True
        except psycopg.Error as e:
            if "does not run describe tasks" in str(e):
                return False
            raise
        finally:
            conn.execute("SELECT shift.drop_model('probe_describe')")


def _skip_without_describe(env):
    if not env["describes"]:
        pytest.skip("this worker does not run describe tasks yet")


def stored(conn, model_id, reader_id):
    rows = conn.execute("SELECT num_rows, dim, data FROM shift.features WHERE model_id = %s AND reader_id = %s "
                        "ORDER BY block", (model_id, reader_id)).fetchall()
    assert rows, "no features of %s on %s" % (model_id, reader_id)
    return np.concatenate([np.frombuffer(d, "<f4").reshape(n, k) for n, k, d in rows])


def labels(conn, reader_id):
    rows = conn.execute("SELECT y FROM shift.labels WHERE reader_id = %s ORDER BY block", (reader_id,)).fetchall()
    return [v for (y,) in rows for v in y]


def score(conn, models, test, train):
    return conn.execute("SELECT * FROM shift.score('CosineNN', '{}', %s, %s, %s)", (models, test, train)).fetchall()


def reader_row(conn, reader_id):
    return conn.execute("SELECT kind, num_samples, classes, input, options FROM shift.readers WHERE reader_id = %s",
                        (reader_id,)).fetchone()


# -- model sources --------------------------------------------------------------------------------

def test_vision_sources_store_the_library_features(env):
    import onnxruntime as ort
    import transformers as T

    base = env["base"]
    models = ["hf_vit", "onnx_net"] + (["tf_net"] if HAS_TF else [])
    with env["db"].connect() as conn:
        conn.execute("SELECT shift.register_model('hf_vit', 'hf', %s)", (str(env["vit"]),))
        conn.execute("SELECT shift.register_model('onnx_net', 'onnx', %s)", (str(env["onnx"]),))
        if HAS_TF:
            conn.execute("SELECT shift.register_model('tf_net', 'tfhub', %s)", (str(env["tf"]),))
        assert conn.execute("SELECT shift.register_npy_reader('NpyImages', %s, %s, block_size => 5)",
                            (str(base / "x_img.npy"), str(base / "y_img.npy"))).fetchone()[0] == 12
        assert conn.execute("SELECT shift.register_imagefolder_reader('FolderImages', %s, block_size => 4)",
                            (str(env["folder"]),)).fetchone()[0] == 9
        assert len(score(conn, models, "FolderImages", "NpyImages")) == len(models)

        from torchvision.datasets import ImageFolder
        folder = ImageFolder(str(env["folder"]))
        samples = {"NpyImages": list(env["x_img"]), "FolderImages": [open(p, "rb").read() for p, _ in folder.samples]}
        assert labels(conn, "NpyImages") == list(env["y_img"])  # classes "0", "1", "2": ids equal the values
        assert labels(conn, "FolderImages") == [t for _, t in folder.samples]
        assert reader_row(conn, "FolderImages")[2] == folder.classes

        vit = T.ViTForImageClassification.from_pretrained(env["vit"]).eval()
        session = ort.InferenceSession(str(env["onnx"]))
        for reader_id, xs in samples.items():
            x = prep.to_batch(xs, 32, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))  # the image processor's normalisation
            with torch.inference_mode():
                want = vit.vit(pixel_values=x).last_hidden_state[:, 0].numpy()
            np.testing.assert_allclose(stored(conn, "hf_vit", reader_id), want, atol=ATOL)
            x = prep.to_batch(xs, 24)  # ONNX: the exported input size, ImageNet normalisation
            want = session.run(["features"], {"x": x.numpy()})[0]
            np.testing.assert_allclose(stored(conn, "onnx_net", reader_id), want, atol=ATOL)
            if HAS_TF:
                from gpu_daemon.models import import_tensorflow
                import_tensorflow()
                import tensorflow_hub as hub
                x = prep.to_batch(xs, 32, (0, 0, 0), (1, 1, 1)).permute(0, 2, 3, 1).numpy()  # NHWC in [0, 1]
                want = hub.load(str(env["tf"]))(x).numpy()
                np.testing.assert_allclose(stored(conn, "tf_net", reader_id), want, atol=ATOL)
        meta = conn.execute("SELECT num_params, feature_dim, input_size FROM shift.models WHERE model_id = 'hf_vit'")
        assert meta.fetchone() == (sum(p.numel() for p in vit.parameters()), 16, 32)  # measured by the worker


def test_text_source_with_sql_and_csv_text_readers(env):
    import transformers as T

    with env["db"].connect() as conn:
        conn.execute("SELECT shift.register_model('hf_bert', 'hf', %s, input => 'Text')", (str(env["bert"]),))
        assert conn.execute("SELECT shift.register_csv_reader('CsvText', %s, block_size => 3)",
                            (str(env["base"] / "text.csv"),)).fetchone()[0] == 8
        assert reader_row(conn, "CsvText")[2:4] == (["neg", "pos"], "Text")  # one text column: Text
        conn.execute("SELECT shift.register_sql_reader('SqlText', 'SELECT body AS x, label AS y FROM "
                     "public.sentences ORDER BY id', input => 'Text', block_size => 5)")
        score(conn, ["hf_bert"], "SqlText", "CsvText")
        bert = T.BertForSequenceClassification.from_pretrained(env["bert"]).eval()
        tok = T.AutoTokenizer.from_pretrained(env["bert"])
        for reader_id, texts in (("CsvText", artifacts.TEXTS), ("SqlText", list(reversed(artifacts.TEXTS)))):
            with torch.inference_mode():
                want = bert.bert(**tok(texts, padding=True, return_tensors="pt")).pooler_output.numpy()
            np.testing.assert_allclose(stored(conn, "hf_bert", reader_id), want, atol=ATOL)
        assert labels(conn, "CsvText") == [[1, 0][i % 2] for i in range(8)]
        assert labels(conn, "SqlText") == [0 if i % 3 else 1 for i in range(8)]


def test_tabular_source_with_npy_and_csv_readers(env):
    base = env["base"]
    with env["db"].connect() as conn:
        conn.execute("SELECT shift.register_model('onnx_mlp', 'onnx', %s, input => 'Tabular')", (str(env["mlp_onnx"]),))
        conn.execute("SELECT shift.register_npy_reader('NpyTab', %s, %s, input => 'Tabular', block_size => 4)",
                     (str(base / "x_tab.npy"), str(base / "y_tab.npy")))
        assert conn.execute("SELECT shift.register_csv_reader('CsvTab', %s, block_size => 4)",
                            (str(base / "tab.csv"),)).fetchone()[0] == 9
        kind, n, classes, input, options = reader_row(conn, "CsvTab")
        assert (kind, classes, input, options["x_columns"]) == ("csv", ["0", "1"], "Tabular",
                                                                ["f0", "f1", "f2", "f3", "f4", "f5"])
        score(conn, ["onnx_mlp"], "CsvTab", "NpyTab")
        with torch.inference_mode():
            want = env["mlp"](torch.from_numpy(env["tab"])).numpy()
        for reader_id in ("NpyTab", "CsvTab"):
            np.testing.assert_allclose(stored(conn, "onnx_mlp", reader_id), want, atol=1e-5)
        assert labels(conn, "NpyTab") == [["hi", "lo", "mid"].index(v) for v in env["tab_y"]]
        assert labels(conn, "CsvTab") == [i % 2 for i in range(9)]


# -- reader kinds ----------------------------------------------------------------------------------

def test_csv_image_paths_reader(env):
    with env["db"].connect() as conn:
        assert conn.execute("SELECT shift.register_csv_reader('CsvImages', %s, block_size => 2)",
                            (str(env["base"] / "images.csv"),)).fetchone()[0] == 5
        assert reader_row(conn, "CsvImages")[2:4] == (["a", "b"], "Vision")
        conn.execute("SELECT shift.register_model('onnx_net2', 'onnx', %s)", (str(env["onnx"]),))
        score(conn, ["onnx_net2"], "CsvImages", "CsvImages")
        import onnxruntime as ort
        want = ort.InferenceSession(str(env["onnx"])).run(["features"], {"x": prep.to_batch(env["x_img"][:5], 24)
                                                                          .numpy()})[0]
        np.testing.assert_allclose(stored(conn, "onnx_net2", "CsvImages"), want, atol=ATOL)
        assert labels(conn, "CsvImages") == [0, 1, 0, 1, 0]


@needs_tf
def test_tfds_reader(env):
    from gpu_daemon.models import import_tensorflow

    import_tensorflow()
    import tensorflow_datasets as tfds

    path = env["tfds"]
    with env["db"].connect() as conn:
        assert conn.execute("SELECT shift.register_tfds_reader('TfdsTrain', %s, block_size => 4)",
                            (str(path),)).fetchone()[0] == 10
        assert conn.execute("SELECT shift.register_tfds_reader('TfdsTest', %s, split => 'test')",
                            (str(path),)).fetchone()[0] == 4
        kind, n, classes, input, options = reader_row(conn, "TfdsTrain")
        assert (kind, classes, input, options["x_key"], options["y_key"]) == ("tfds", ["cat", "dog", "emu"], "Vision",
                                                                               "image", "label")
        conn.execute("SELECT shift.register_model('onnx_net3', 'onnx', %s)", (str(env["onnx"]),))
        score(conn, ["onnx_net3"], "TfdsTest", "TfdsTrain")
        ref = list(tfds.as_numpy(tfds.builder_from_directory(str(path)).as_dataset(
            split="train", shuffle_files=False, read_config=tfds.ReadConfig(interleave_cycle_length=1))))
        assert labels(conn, "TfdsTrain") == [int(r["label"]) for r in ref]
        import onnxruntime as ort
        x = prep.to_batch(np.stack([r["image"] for r in ref]), 24)
        want = ort.InferenceSession(str(env["onnx"])).run(["features"], {"x": x.numpy()})[0]
        np.testing.assert_allclose(stored(conn, "onnx_net3", "TfdsTrain"), want, atol=ATOL)


def test_hf_datasets_reader_is_counted_by_a_worker(env):
    _skip_without_describe(env)
    import datasets

    with env["db"].connect() as conn:
        n = conn.execute("SELECT shift.register_hf_reader('HfImages', %s, split => 'train', block_size => 3)",
                         (str(env["hf_images"]),)).fetchone()[0]
        assert n == 7
        kind, n, classes, input, options = reader_row(conn, "HfImages")
        assert (kind, classes, input, options["x_column"]) == ("hf", ["cat", "dog", "emu"], "Vision", "image")
        assert conn.execute("SELECT shift.register_hf_reader('HfTexts', %s)",
                            (str(env["hf_texts"]),)).fetchone()[0] == 7
        assert reader_row(conn, "HfTexts")[2:4] == (["0", "1"], "Text")
        conn.execute("SELECT shift.register_model('onnx_net4', 'onnx', %s)", (str(env["onnx"]),))
        score(conn, ["onnx_net4"], "HfImages", "HfImages")
        ref = datasets.load_from_disk(str(env["hf_images"]))["train"]
        assert labels(conn, "HfImages") == list(ref["label"])
        import onnxruntime as ort
        x = prep.to_batch(np.stack([np.asarray(im) for im in ref["image"]]), 24)
        want = ort.InferenceSession(str(env["onnx"])).run(["features"], {"x": x.numpy()})[0]
        np.testing.assert_allclose(stored(conn, "onnx_net4", "HfImages"), want, atol=ATOL)
        # what the worker finds wrong comes back with its own SQLSTATE, and nothing is registered
        (env["base"] / "not_a_dataset").mkdir(exist_ok=True)
        for path, args, state, said in (
                (env["base"] / "nowhere", "", "58P01", "does not exist on this worker"),
                (env["base"] / "not_a_dataset", "", "22023", "is not a dataset written by save_to_disk"),
                (env["hf_images"], ", split => 'valid'", "22023", "has no split 'valid'"),
                (env["hf_texts"], ", y_column => 'nope'", "22023", "has no label column 'nope'"),
                (env["hf_texts"], ", x_column => 'nope'", "22023", "has no column 'nope'")):
            with pytest.raises(psycopg.Error) as info:
                conn.execute("SELECT shift.register_hf_reader('HfBad', %%s%s)" % args, (str(path),))
            diag = info.value.diag
            assert (diag.sqlstate, said in diag.message_primary) == (state, True), (path, diag.message_primary)
            assert reader_row(conn, "HfBad") is None


def test_file_readers_check_files_and_privileges(env):
    base = env["base"]
    with env["db"].connect() as conn:
        for sql, args, state in (
                ("SELECT shift.register_csv_reader('Bad', %s)", (str(base / "missing.csv"),), "58P01"),
                ("SELECT shift.register_csv_reader('Bad', %s, label_column => 'y')", (str(base / "tab.csv"),),
                 "22023"),
                ("SELECT shift.register_csv_reader('Bad', %s, input => 'Text')", (str(base / "tab.csv"),), "22023"),
                ("SELECT shift.register_imagefolder_reader('Bad', %s)", (str(base / "nowhere"),), "58P01"),
                ("SELECT shift.register_npy_reader('Bad', %s, %s)", (str(base / "x_img.npy"),
                                                                    str(base / "y_tab.npy")), "22023"),
                ("SELECT shift.register_tfds_reader('Bad', %s)", (str(base),), "58P01"),
                ("SELECT shift.register_csv_reader('Bad', 'relative.csv')", (), "22023")):
            with pytest.raises(psycopg.Error) as info:
                conn.execute(sql, args)
            assert info.value.diag.sqlstate == state, (sql, info.value.diag.message_primary)
            assert not info.value.diag.message_primary.startswith("plpy")
        conn.execute("DROP ROLE IF EXISTS shift_files_user")
        conn.execute("CREATE ROLE shift_files_user")
        try:
            conn.execute("SELECT shift.grant_usage('shift_files_user')")
            with conn.transaction():
                conn.execute("SET LOCAL ROLE shift_files_user")
                with pytest.raises(psycopg.Error) as info:
                    conn.execute("SELECT shift.register_csv_reader('Mine', %s)", (str(base / "tab.csv"),))
            assert info.value.diag.sqlstate == "42501" and "pg_read_server_files" in info.value.diag.message_hint
        finally:
            conn.execute("DROP OWNED BY shift_files_user")
            conn.execute("DROP ROLE shift_files_user")


# -- bulk registration and the describe step ------------------------------------------------------

def test_bulk_registration_reports_each_model(env):
    models = [
        {"model_id": "bulk_vit", "source": "hf", "locator": str(env["vit"])},
        {"source": "hf", "locator": str(env["bert"]), "upstream_dataset": "tiny-text"},
        str(env["onnx"]),                                               # a locator: source from the argument
        {"model_id": "bulk_gone", "source": "torchscript", "locator": "/nonexistent/model.pt"},
        {"model_id": "bulk_bad", "source": "keras", "locator": "x"},   # rejected: unknown source
        {"model_id": "bulk_vit", "source": "hf", "locator": str(env["vit"])},  # rejected: duplicate
        {"model_id": "bad id!", "source": "onnx", "locator": str(env["onnx"])},  # rejected: the id CHECK
        {"model_id": "bulk_x", "source": "onnx", "locator": "y", "colour": "red"},  # rejected: unknown key
        42,
    ]
    with env["db"].connect() as conn:
        before = conn.execute("SELECT count(*) FROM shift.models").fetchone()[0]
        rows = conn.execute("SELECT * FROM shift.register_models(%s, source => 'onnx')",
                            (json.dumps(models),)).fetchall()
        status = {r[0]: (r[1], r[2]) for r in rows}
        assert [r[1] for r in rows] == ["pending"] * 4 + ["rejected"] * 5
        assert rows[1][0] == "bert" and rows[2][0] == "net"  # ids from the locators
        assert "unknown model source" in status["bulk_bad"][1] and "already registered" in rows[5][2]
        assert "model id 'bad id!' may hold" in status["bad id!"][1]
        assert "unknown key colour" in status["bulk_x"][1] and rows[8][0] is None
        assert conn.execute("SELECT count(*) FROM shift.models").fetchone()[0] == before + 4
        pending = conn.execute("SELECT count(*) FROM shift.tasks WHERE kind = 'describe' AND key = ANY(%s)",
                               (["describe/model/%s" % m for m in ("bulk_vit", "bert", "net", "bulk_gone")],)
                               ).fetchone()[0]
        assert pending == 4
        if not env["describes"]:
            pytest.skip("this worker does not run describe tasks yet")
        result = dict((m, (s, e)) for m, s, e in conn.execute(
            "SELECT * FROM shift.describe_models(ARRAY['bulk_vit', 'bert', 'net', 'bulk_gone'])").fetchall())
        assert {m: s for m, (s, _) in result.items()} == {"bulk_vit": "ready", "bert": "ready", "net": "ready",
                                                          "bulk_gone": "failed"}
        assert "does not exist on this worker" in result["bulk_gone"][1]
        meta = conn.execute("SELECT model_id, input, num_params, feature_dim, input_size, num_classes, input_mean, "
                            "upstream_dataset, loaded_at IS NOT NULL, load_error FROM shift.models "
                            "WHERE model_id IN ('bulk_vit', 'bert', 'net') ORDER BY model_id").fetchall()
        assert meta[0][:2] == ("bert", "Text") and meta[0][3] == 16 and meta[0][5] == 3 and meta[0][6] is None
        assert meta[0][7] == "tiny-text"
        assert meta[1][:2] == ("bulk_vit", "Vision") and meta[1][3:6] == (16, 32, 4)
        assert meta[1][6] == pytest.approx([0.5, 0.4, 0.3]) and meta[1][8] and meta[1][9] is None
        assert meta[2][0] == "net" and meta[2][2] == sum(p.numel() for p in env["net"].parameters())
        view = dict(conn.execute("SELECT model_id, status FROM shift.model_status WHERE model_id IN "
                                 "('bulk_vit', 'bulk_gone')").fetchall())
        assert view == {"bulk_vit": "ready", "bulk_gone": "failed"}
        # the failed model is tried again by default, and still fails
        again = conn.execute("SELECT * FROM shift.describe_models()").fetchall()
        assert ("bulk_gone", "failed") in [(m, s) for m, s, _ in again]
