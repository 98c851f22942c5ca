"""Training-free transferability metrics: how well a model's frozen features (or its source
classifier's outputs) on the target task predict its accuracy after fine-tuning.

One module per metric, each a pure function of arrays (features (N, D), integer labels (N,);
LEEP and NCE the source classifier's probabilities or predicted labels instead) returning one
number, with the paper, its equations and the reference implementation it is checked against
(../shared/reference/transferability) named in its docstring. NCTI and ETran are relative to the
pool of models ranked: their modules give the raw terms per model and `combine` over the pool.
"""

from .etran import etran_terms
from .gbc import gbc
from .hscore import h_score, shrinkage_h_score
from .knn import knn_accuracy
from .leep import leep
from .logme import logme
from .nce import nce
from .ncti import ncti_terms
from .nleep import nleep
from .sfda import sfda
from .transrate import transrate
from ._inputs import DegenerateInput

__all__ = ["DegenerateInput", "etran_terms", "gbc", "h_score", "knn_accuracy", "leep", "logme", "nce", "ncti_terms",
           "nleep", "sfda", "shrinkage_h_score", "transrate"]
