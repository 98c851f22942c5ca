"""File-based readers: what registration and the workers both need to know about a file source.

Registration runs inside PostgreSQL, which has pyfuncs' requirements but none of the
frameworks (no PIL, torch or TensorFlow), and the worker runs next to it; both import
these helpers, written with the standard library alone, so the sample order a reader
was counted in is the order it is read in.

* Image folders: one subfolder per class; classes in sorted order, files in the order
  of ``sorted(os.walk(class_dir))`` then sorted file names, the order of torchvision's
  ``ImageFolder``, so class ids and sample order match it.
* CSV files: a header row names the columns; samples in file order.
* TFDS prepared directories (``<data_dir>/<name>/<version>``): ``dataset_info.json`` gives
  the split sizes, ``features.json`` the feature types, ``<label>.labels.txt`` the class
  names.
"""

import csv
import gzip
import io
import json
import os

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class SourceError(ValueError):
    """A file source that cannot be read as registered; the message says which file and why."""


class MissingSource(SourceError):
    """A file or folder of a source that does not exist."""


# -- image folders --------------------------------------------------------------------------------

def extensions(options):
    exts = options.get("extensions") if options else None
    if not exts:
        return IMAGE_EXTENSIONS
    if not isinstance(exts, list) or not all(isinstance(e, str) and e.strip(".") for e in exts):
        raise SourceError("option extensions must be a list of file name endings such as [\"png\", \"jpg\"], "
                          "not %s" % json.dumps(exts)[:100])
    return tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in exts)


def imagefolder_classes(root):
    """Class names: the subfolders of ``root``, sorted."""
    try:
        return sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    except FileNotFoundError:
        raise MissingSource("image folder %s does not exist" % root) from None
    except NotADirectoryError:
        raise SourceError("%s is not a folder" % root) from None


def imagefolder_files(root, cls, exts=IMAGE_EXTENSIONS):
    """Files of one class, relative to ``root``, in ImageFolder order."""
    out = []
    base = os.path.join(root, cls)
    for dirpath, _, names in sorted(os.walk(base, followlinks=True)):
        for name in sorted(names):
            if name.lower().endswith(exts):
                out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return out


def imagefolder_counts(root, exts=IMAGE_EXTENSIONS):
    """[(class, number of image files)] in class order, without holding the file names."""
    counts = []
    for cls in imagefolder_classes(root):
        n = 0
        for _, _, names in os.walk(os.path.join(root, cls), followlinks=True):
            n += sum(1 for name in names if name.lower().endswith(exts))
        counts.append((cls, n))
    return counts


# -- CSV --------------------------------------------------------------------------------------------

def open_text(path, encoding="utf-8"):
    """A text stream over a file, gunzipped when its name ends in .gz."""
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, newline="")
    return open(path, "r", encoding=encoding, newline="")


def csv_dialect(options):
    options = options or {}
    out = dict(delimiter=options.get("delimiter", ","), quotechar=options.get("quotechar", '"'))
    for name, value in out.items():
        if not isinstance(value, str) or len(value) != 1 or value in "\r\n":
            raise SourceError("option %s must be one character other than a line break, not %s"
                              % (name, json.dumps(value)[:40]))
    return out


def csv_columns(header, label_column, x_columns, path):
    """Indices of the label column and the sample columns in a header row."""
    where = {name: i for i, name in enumerate(header)}
    if label_column not in where:
        raise SourceError("csv file %s has no column %r; its columns are %s"
                          % (path, label_column, ", ".join(header)))
    if x_columns:
        missing = [c for c in x_columns if c not in where]
        if missing:
            raise SourceError("csv file %s has no column %r; its columns are %s"
                              % (path, missing[0], ", ".join(header)))
        xs = list(x_columns)
    else:
        xs = [c for c in header if c != label_column]
    if not xs:
        raise SourceError("csv file %s has no column besides the label %s" % (path, label_column))
    return where[label_column], [where[c] for c in xs], xs


def guess_csv_input(values, x_count):
    """Vision (one column of image paths), Text (one non-numeric column) or Tabular."""
    if x_count == 1 and values:
        v = values[0].strip()
        if v.lower().endswith(IMAGE_EXTENSIONS):
            return "Vision"
        try:
            float(v)
        except ValueError:
            return "Text"
    return "Tabular"


def csv_rows(f, path, options=None):
    """(header, iterator of (line number, row)) over an open CSV stream; blank lines are not samples."""
    rows = csv.reader(f, **csv_dialect(options))
    header = next(rows, None)
    if not header:
        raise SourceError("csv file %s is empty; it needs a header row naming its columns" % path)

    def records():
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise SourceError("line %d of csv file %s has %d fields, the header has %d"
                                  % (line, path, len(row), len(header)))
            yield line, row

    return header, records()


def csv_summary(path, label_column, x_columns=None, options=None):
    """(rows, distinct label texts, x column names, first row's x values), reading the file once."""
    with open_text(path, (options or {}).get("encoding", "utf-8")) as f:
        header, records = csv_rows(f, path, options)
        y_at, x_at, names = csv_columns(header, label_column, x_columns, path)
        n, labels, first = 0, set(), None
        for _, row in records:
            if first is None:
                first = [row[i] for i in x_at]
            labels.add(row[y_at])
            n += 1
    return n, labels, names, first or []


# -- TFDS prepared directories ------------------------------------------------------------------

def _read_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise MissingSource("%s has no %s; give the prepared version directory (<data_dir>/<name>/<version>)"
                          % (os.path.dirname(path), os.path.basename(path))) from None
    except ValueError as e:  # UnicodeDecodeError too
        raise SourceError("%s of %s is not valid json: %s" % (os.path.basename(path), what, str(e)[:200])) from None


def tfds_info(path):
    """Split sizes, supervised keys and features of a TFDS prepared directory."""
    info = _read_json(os.path.join(path, "dataset_info.json"), path)
    features = _read_json(os.path.join(path, "features.json"), path)
    try:  # json of any shape may be there: what is not TFDS's layout is one error, never a raw one
        splits = {str(s["name"]): sum(int(v) for v in s.get("shardLengths", [])) for s in info.get("splits", [])}
        items = ((info.get("supervisedKeys") or {}).get("tuple") or {}).get("items") or []
        supervised = [k for k in (i.get("featureKey") for i in items) if isinstance(k, str)]
        feats = ((features.get("featuresDict") or {}).get("features")) or {}
        if not all(isinstance(k, str) and isinstance(v, dict) for k, v in feats.items()) \
                or any(n < 0 for n in splits.values()):
            raise ValueError("features and split sizes are not TFDS's")
    except (AttributeError, KeyError, TypeError, ValueError):
        raise SourceError("dataset_info.json and features.json of %s do not describe a TFDS dataset; give the "
                          "version directory that tfds prepared" % path) from None
    return dict(name=info.get("name"), splits=splits, supervised=supervised, features=feats,
                file_format=info.get("fileFormat", "tfrecord"))


def tfds_feature_kind(feature):
    """Image, Text, ClassLabel, Tensor or Scalar from a features.json entry."""
    name = (feature or {}).get("pythonClassName", "")
    return name.rsplit(".", 1)[-1] if name else "Tensor"


def tfds_class_names(path, key, feature):
    """Class names of a ClassLabel feature: ``<key>.labels.txt`` if written, else "0".."n-1"."""
    names_file = os.path.join(path, "%s.labels.txt" % key)
    if os.path.isfile(names_file):
        try:
            with open(names_file, encoding="utf-8") as f:
                return [line.rstrip("\n") for line in f if line.rstrip("\n")]
        except UnicodeDecodeError:
            raise SourceError("%s is not utf-8 text with one class name a line" % names_file) from None
    try:
        n = int(((feature or {}).get("classLabel") or {}).get("numClasses", 0))
    except (AttributeError, TypeError, ValueError):
        n = -1
    if not 0 <= n <= 10 ** 7:
        raise SourceError("feature %s of %s does not give its number of classes" % (key, path))
    return [str(i) for i in range(n)]
