"""SHiFT-QL texts that exercise every construct, and a hypothesis strategy that mutates them.

The unit fuzz test feeds the mutations to the translator, the integration fuzz
test to shift.translate and shift.query in PostgreSQL. Reader names are the
fixture's (TestReader, TrainReader, ...), tables are public.licences and
public.latencies, as in tests/integration/conftest.py.
"""

from hypothesis import strategies as st

Q1 = """SELECT ModelId FROM Models
      WHERE Input == 'Vision'
      ORDER BY UpstreamAccuracy DESC LIMIT 1"""
Q2 = """SELECT ModelId FROM Models
      WHERE Input == 'Vision'
      ORDER BY CosineNN ASC LIMIT 1
      TESTED ON TestReader TRAINED ON TrainReader"""
Q3 = """SELECT ModelId FROM Models
      WHERE Input == 'Vision'
      ORDER BY Linear(lr=0.1) ASC LIMIT 1
      TESTED ON TestReader TRAINED ON TrainReader"""
Q4 = """Q1 := SELECT ModelId FROM Models
      WHERE Input == 'Vision'
      ORDER BY UpstreamAccuracy DESC LIMIT 1
Q4 := Q1
      UNION
      SELECT ModelId FROM Models
      WHERE Input == 'Vision' AND ModelId NOT IN Q1
      ORDER BY Linear(lr=0.1) ASC LIMIT 1
      TESTED ON TestReader TRAINED ON TrainReader"""
HYBRID = """(SELECT ModelId FROM Models
WHERE Input == 'Vision'
ORDER BY UpstreamAccuracy DESC LIMIT 1) Q1

UNION

(SELECT ModelId FROM Models
WHERE Input == 'Vision' AND ModelId NOT IN Q1
ORDER BY Linear(lr=0.1) ASC LIMIT 1
TESTED ON TestReader TRAINED ON TrainReader) Q2"""
Q5 = """SELECT ModelId FROM Models
WHERE Input == 'Vision' AND
      Readers.ReaderId IN
          (SELECT DataReaderId FROM DataReaders
          ORDER BY Task2Vec LIMIT 1
          TESTED ON TestReader
      ) Q6
ORDER BY FineTune LIMIT 1"""

SEEDS = [
    Q1, Q2, Q3, Q4, HYBRID, Q5,
    "SELECT ModelId, NumParams FROM Models WHERE NumParams BETWEEN 1.5M AND 10M AND Architecture IS NOT NULL "
    "AND (Input = 'Vision' OR NOT Input LIKE 'T%') ORDER BY NumParams DESC LIMIT 3 OFFSET 1",
    "SELECT m.ModelId, l.licence FROM Models m JOIN public.licences l ON l.model_id = m.ModelId "
    "WHERE l.licence IN ('MIT', 'Apache-2.0') ORDER BY KNN(k=3, metric='euclidean') LIMIT 2 "
    "TESTED ON TestReader TRAINED ON TrainReader",
    "SELECT ModelId, count(*) AS n FROM Models JOIN public.latencies l ON l.model_id = Models.ModelId "
    "GROUP BY ModelId HAVING max(l.ms) < 50 ORDER BY avg(l.ms)",
    "WITH fast AS (SELECT model_id FROM public.latencies WHERE ms < 5) SELECT DISTINCT ModelId FROM Models "
    "WHERE ModelId IN (SELECT model_id FROM fast) <SHIFT> ORDER BY LinearAccuracy(lr=0.05, epochs=5) DESC "
    "LIMIT 2 TESTED ON TestReader TRAINED ON TrainReader </SHIFT>",
    "CREATE OR REPLACE SCORING VIEW best AS SELECT ModelId FROM Models ORDER BY EuclideanNN LIMIT 2 "
    "TESTED ON TestReader TRAINED ON TrainReader; SELECT ModelId FROM best WHERE ModelId IN best",
    "CREATE OR REPLACE DATASET SIMILARITY VIEW near SELECT DataReaderId FROM DataReaders WHERE Input = 'Vision' "
    "ORDER BY Task2Vec LIMIT 2 TESTED AGAINST TestReader; DROP DATASET SIMILARITY VIEW IF EXISTS near",
    "(SELECT ModelId FROM Models ORDER BY CosineNN LIMIT 2 TESTED ON TestReader TRAINED ON TrainReader) "
    "INTERSECT (SELECT ModelId FROM Models ORDER BY Linear LIMIT 2 TESTED ON TestReader TRAINED ON TrainReader) "
    "EXCEPT SELECT ModelId FROM Models WHERE UpstreamAccuracy IS NULL",
    "SELECT t.ModelId, t.Score FROM (SELECT ModelId FROM Models ORDER BY CosineNNAccuracy DESC LIMIT 3 "
    "TESTED ON 'TestReader' TRAINED ON \"TrainReader\") AS t WHERE t.ModelId <> 'bert-base' ORDER BY t.Score",
    "Small := SELECT ModelId FROM Models WHERE NumParams < 5M; "
    "SELECT ModelId FROM Small ORDER BY FineTune(steps=2) LIMIT 1 TESTED ON TestReader TRAINED ON TrainReader",
]
NOISE = "()'\";:=<>/*-,.$\\ \n\tQ1SELECTUNIONSHIFTVIEWCREATE0123456789KMé[]{}!@#%^&|?~`"
WORDS = ["SELECT", "FROM", "WHERE", "ORDER BY", "LIMIT", "UNION", "INTERSECT", "EXCEPT", "TESTED ON", "TRAINED ON",
         "TESTED AGAINST", "<SHIFT>", "</SHIFT>", "Q1", "Models", "DataReaders", "CosineNN", "Linear(lr=0.1)",
         "KNN(k=3)", "Task2Vec", "FineTune", "CREATE SCORING VIEW v AS", "DROP SCORING VIEW v", "IN", "NOT",
         "(", ")", ";", ":=", "10M", "1.5K", "'x'", '"y"', "NULL", "WITH", "AS", "GROUP BY", "JOIN", "public.licences"]


@st.composite
def mutated(draw):
    """A corpus text with one to four token-level edits: delete, duplicate, swap, insert noise or a keyword."""
    tokens = draw(st.sampled_from(SEEDS)).split(" ")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(tokens) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "word", "blank"]))
        if op == "delete" and len(tokens) > 1:
            del tokens[i]
        elif op == "duplicate":
            tokens.insert(i, tokens[draw(st.integers(0, len(tokens) - 1))])
        elif op == "swap":
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op == "insert":
            at = draw(st.integers(0, len(tokens[i])))
            tokens[i] = tokens[i][:at] + draw(st.text(NOISE, min_size=1, max_size=3)) + tokens[i][at:]
        elif op == "word":
            tokens.insert(i, draw(st.sampled_from(WORDS)))
        else:
            tokens[i] = ""
    return " ".join(tokens)
