"""Task identities and payloads shared by the planner and the workers (seed 000 §3.4).

An inference task turns blocks of one reader into features of one model; a
proxy task turns cached features of a (test, train) reader pair into a proxy
value; a fine-tune task fine-tunes one model on a train reader and evaluates it
(seed 002 §4.3); a datasim task computes the Task2Vec embedding of one version
of a reader with one set of settings (seed 000 §3.4); a validate task re-reads the
cached blocks of a reader whose source changed and fingerprints them (fingerprints.py).
The key names the work, so identical work asked for by concurrent queries is one row
of shift.tasks.

An inference task is one block: two queries that split a reader differently (successive
halving rounds, devices) ask for the same (model, reader, block) keys, so no block is
inferred twice whatever the partitioning; the worker keeps a loaded model busy on the
next blocks of the same model, so one task per block costs a claim, not a model load.
"""

from .scorers import canonical_json


def inference_key(model_id, reader_id, block):
    return "inference/%s/%s/%d" % (model_id, reader_id, block)


def inference_payload(model_id, reader_id, blocks):
    return {"model_id": model_id, "reader_id": reader_id, "blocks": sorted(blocks)}


def validate_key(reader_id, signature):
    return "validate/%s/%s" % (reader_id, signature)


def validate_payload(reader_id, signature):
    return {"reader_id": reader_id, "signature": signature}


def proxy_key(proxy, params, model_id, test_reader, train_reader, fidelity):
    return "proxy/%s/%s/%s/%s/%s/%d" % (proxy, canonical_json(params), model_id, test_reader, train_reader, fidelity)


def proxy_payload(proxy, params, model_id, test_reader, train_reader, fidelity):
    return {"proxy": proxy, "params": params, "model_id": model_id, "test_reader": test_reader,
            "train_reader": train_reader, "fidelity": fidelity}


def num_blocks(num_samples, block_size):
    return -(-num_samples // block_size)


def finetune_key(model_id, train_reader, validation_reader, test_reader, params, source_signature):
    return "finetune/%s/%s/%s/%s/%s/%s" % (model_id, train_reader, validation_reader, test_reader,
                                           source_signature, canonical_json(params))


def finetune_payload(model_id, train_reader, validation_reader, test_reader, params, source_signature):
    # source_signature: the readers' data the call saw, which the result is stored as made from
    return {"model_id": model_id, "train_reader": train_reader, "validation_reader": validation_reader,
            "test_reader": test_reader, "params": params, "source_signature": source_signature}


def datasim_key(reader_id, reader_version, settings, source_signature):
    return "datasim/task2vec/%s/%s/%s/%s" % (reader_id, reader_version, source_signature, canonical_json(settings))


def datasim_payload(reader_id, reader_version, settings, source_signature):
    # model_id: the probe, so that rights on it are checked and a worker that has it loaded takes the task;
    # source_signature: the data the query saw, which the embedding is stored as made from
    return {"reader_id": reader_id, "reader_version": reader_version, "model_id": settings["probe"],
            "settings": settings, "source_signature": source_signature}
