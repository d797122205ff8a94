"""Serving a trained run over HTTP: a JSON API in the Hugging Face shape and a page (``kgzsl serve RUN``).

- :mod:`~kgzsl.serve.inputs`: request bodies, images and parameters, checked before any model work;
- :mod:`~kgzsl.serve.labels`: label suggestions for autocompletion;
- :mod:`~kgzsl.serve.app`: the FastAPI app and its endpoints; ``static/`` holds the page;
- :mod:`~kgzsl.serve.server`: running it (``kgzsl serve``, or a server in a thread);
- :mod:`~kgzsl.serve.bench`: ``kgzsl benchmark serve``, throughput and latency under concurrent clients.

Needs the ``serve`` extra (``pip install 'kgzsl[serve]'``: FastAPI, uvicorn, python-multipart).
"""
