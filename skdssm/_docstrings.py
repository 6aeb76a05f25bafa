"""The parameters both estimators share, documented once.

Each estimator's docstring holds the line ``%(shared_parameters)s`` inside its Parameters section;
:func:`fill_shared_parameters` replaces it with the entries below, each headed by the type and by
the default read from that estimator's ``__init__`` (the estimators differ in some defaults, never
in what a parameter means). Parameters whose meaning differs (``loss``, ``early_stopping``) stay in
the estimators' own docstrings.
"""

from __future__ import annotations

import inspect
import textwrap

SHARED_PARAMETERS = {
    "user_col": ("str or int", """
        User id column (a name, or a position when X is an array)."""),
    "item_col": ("str or int", """
        Item id column."""),
    "user_features": ('"auto" or list of str', """
        Columns (or padded-block names) for the user tower. With ``"auto"`` every column that
        is constant within each user id and not claimed otherwise is a user feature; a column
        constant within neither id is a ValueError."""),
    "item_features": ('"auto" or list of str', """
        Columns for the item tower (``"auto"``: constant within each item id)."""),
    "sequence_features": ("list of str or None", """
        Columns of ordered item-id lists (or padded blocks) describing the user's behaviour;
        they go through self-attention."""),
    "embedding_dim": ("int", """
        Width of every embedding and of the dense branch."""),
    "hidden_dims": ("tuple of int", """
        User-tower MLP widths; the last is the embedding size."""),
    "item_hidden_dims": ("tuple of int or None", """
        Item-tower MLP widths (a lighter item tower); None uses ``hidden_dims``."""),
    "activation": ('{"relu", "tanh", "gelu", "silu", "elu", "leaky_relu", "sigmoid"}', """
        Activation of the hidden layers."""),
    "batch_norm": ("bool", """
        BatchNorm after each hidden Linear."""),
    "dropout": ("float", """
        Dropout probability of the hidden layers."""),
    "dropout_position": ('{"after", "before"}', """
        Dropout after each hidden activation, or before each Linear (the
        placement of the best MovieLens structure)."""),
    "init": ('{"default", "xavier_normal", "xavier_uniform", "kaiming_normal", '
             '"kaiming_uniform", "orthogonal"}', """
        Initialisation of the Linear weights ("default" keeps PyTorch's)."""),
    "activate_output": ("bool", """
        Apply BatchNorm/activation to the last layer too (some published MLP structures do; off by
        default because an activation right before L2 normalisation restricts the embedding
        space)."""),
    "normalize": ("bool", """
        L2-normalise both towers' outputs (dot product = cosine)."""),
    "temperature": ("float", """
        Logits are ``cosine / temperature`` (plus a learned bias): a small temperature lets a
        sigmoid or softmax reach confident probabilities."""),
    "ensemble_size": ("int", """
        Number of independently initialised user/item tower pairs trained side by side on the
        same mini-batches, each on its own loss (a deep ensemble in one net). Embeddings are
        the members' embeddings concatenated and divided by ``sqrt(ensemble_size)``, so a dot
        product (and every logit, top-k and index query) is the mean of the members' scores and
        embeddings stay unit-norm."""),
    "n_heads": ("int", """
        Attention heads of the self-attention over sequences."""),
    "n_attention_layers": ("int", """
        Self-attention blocks (attention, residual, LayerNorm) over sequences."""),
    "max_sequence_length": ("int", """
        Longer sequences keep their most recent items."""),
    "max_epochs": ("int", """
        Passes over the training rows (fewer when early stopping ends training)."""),
    "batch_size": ("int", """
        Rows per mini-batch (and, for in-batch negatives, candidates per softmax)."""),
    "lr": ("float", """
        Learning rate of the optimizer."""),
    "optimizer": ('{"adam", "adamw", "sgd"} or torch optimizer class', """
        Adam and AdamW run fused (one kernel per step) where torch supports it."""),
    "weight_decay": ("float", """
        Weight decay of the optimizer."""),
    "validation_fraction": ("float", """
        Share of the rows early stopping holds out."""),
    "n_iter_no_change": ("int", """
        Epochs without improvement before early stopping ends training."""),
    "refit": ("bool", """
        With ``early_stopping``: once early stopping has chosen the number of epochs
        (``best_epoch_``), train a fresh model with the same parameters and seed on every row,
        the validation rows included, for that many epochs, and serve it (as GridSearchCV's
        ``refit`` does for the best parameters). ``history_`` is the refit's,
        ``validation_history_`` the early-stopped run's."""),
    "lr_schedule": ('{"cosine", "plateau"}, skorch callback or None', """
        A skorch ``LRScheduler``: ``"cosine"`` anneals the learning rate to 0 over
        ``max_epochs``; ``"plateau"`` halves it whenever the score early stopping watches has
        not improved for two epochs (the training loss when ``early_stopping=False``). The
        learning rate of each epoch is recorded in ``history_`` as ``event_lr``."""),
    "callbacks": ("list of skorch callbacks or (name, callback) tuples", """
        Added to the net's callbacks."""),
    "id_dropout": ("float", """
        Probability of hiding a user or item id (replacing it by the out-of-vocabulary code)
        during training, so that ids unseen in fit are served from their features."""),
    "mixed_precision": ('{"bf16", "fp16"} or None', """
        Train and predict under ``torch.autocast`` ("fp16" needs CUDA and adds a gradient
        scaler)."""),
    "gradient_checkpointing": ("bool", """
        Recompute tower activations in the backward pass (less memory, more compute)."""),
    "distributed": ("bool", """
        Data-parallel training under a ``torch.distributed`` launcher (``torchrun
        --nproc_per_node=N script.py``), off by default because one process is what most fits
        need. Every process calls ``fit`` on the whole frame, so vocabularies, histories, the
        sampler's frequency tables and the validation split are built identically on every
        rank; then each global batch of ``batch_size`` rows is split over the ranks, each rank
        runs its share through the towers and ``DistributedDataParallel`` averages the
        gradients (gloo on CPU, NCCL on CUDA with one GPU per process, chosen by
        ``LOCAL_RANK``). Every rank ends with the same weights and answers ``predict_topk``
        identically; early stopping scores the whole validation split on every rank, so all
        stop at the same epoch. In-batch and sampled softmax candidates are the rank's own
        rows and draws (``batch_size / N`` in-batch candidates per softmax with N ranks), and
        the logQ correction is computed for what each rank's softmax sees. ``fit`` raises a
        ValueError when the launcher's variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)
        are absent and no process group exists (docs/scaling.md)."""),
    "verbose": ("int", """
        ``>= 1`` shows a progress bar and the per-epoch table."""),
    "device": ('{"cpu", "cuda", "auto"} or torch.device', """
        Where the towers train and embed."""),
    "index": ('{"auto", "hnsw", "exact"} or index object', """
        Nearest-neighbour index built over the item embeddings after fit, which serves
        ``predict_topk`` and ``kneighbors`` (:mod:`skdssm.neighbors`). ``"auto"`` uses exact
        search below ``skdssm.neighbors.EXACT_CROSSOVER`` items (measured) and HNSW from there
        on. An object such as ``HNSWIndex(M=32, target_recall=0.995)`` configures the index
        (its parameters grid-search as ``index__M``); the fitted copy is ``index_``. HNSW's
        ``ef_search`` is tuned on the embeddings of the training users unless given; its
        ``random_state`` defaults to this estimator's."""),
    "random_state": ("int, RandomState or None", """
        Seeds initialisation, shuffling, dropout, negative sampling and the validation split:
        the same seed gives identical predictions."""),
}

PLACEHOLDER = "%(shared_parameters)s"


def shared_parameter_docs(cls, indent: str = "    ") -> str:
    """The numpydoc entries of the shared parameters, with ``cls``'s defaults."""
    signature = inspect.signature(cls.__init__)
    entries = []
    for name, (kind, description) in SHARED_PARAMETERS.items():
        default = signature.parameters[name].default
        body = textwrap.indent(textwrap.dedent(description).strip(), indent * 2)
        entries.append(f"{indent}{name} : {kind}, default={default!r}\n{body}")
    return "\n".join(entries)


def fill_shared_parameters(cls):
    """Class decorator: put the shared parameter entries in place of the placeholder line."""
    line = f"    {PLACEHOLDER}"
    if cls.__doc__ is None or line not in cls.__doc__:
        raise ValueError(f"{cls.__name__}'s docstring has no {PLACEHOLDER!r} line.")
    cls.__doc__ = cls.__doc__.replace(line, shared_parameter_docs(cls))
    return cls
