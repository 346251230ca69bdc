"""Attention over channels and space: the vision side of the notes, in NumPy.

    conv.py, pool.py, global_pool.py, batchnorm.py, gate.py   the building blocks, forward above backward
    blocks.py            the run mode, 1×1 convolutions, conv → BatchNorm → ReLU
    pixel_attention.py   attention over positions through the project's attention core
    modules/             the ten attention modules (SE, SK, ECA, CBAM, BAM, Non-local, DA-Net,
                         ANLNet, GC-Net, GSoP), one file each
    shapes.py            the generated image task, with object masks
    cnn.py               the small CNN into which a module is inserted
    train.py             `make vision`: train every variant for the same budget and score the maps

Chapter 14 of the book, docs/14-attention-over-channels-and-space.md, reads these files in order.
"""
