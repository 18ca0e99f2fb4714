"""``polymodal serve``: a model folder as an HTTP service and a web page.

* :mod:`~polymodal.serve.app`: :func:`create_app`, the FastAPI app (routes, error answers).
* :mod:`~polymodal.serve.schemas`: what ``POST /predict`` takes and answers.
* :mod:`~polymodal.serve.parsing`: a JSON or multipart body into a validated request.
* :mod:`~polymodal.serve.inputs`: the columns a patient may carry, checked by name.
* :mod:`~polymodal.serve.files`: uploads and allowed paths placed in the work folder.
* :mod:`~polymodal.serve.rows`: a request's patients as manifest rows.
* :mod:`~polymodal.serve.service`: the Predictor and explain calls on those rows.
* :mod:`~polymodal.serve.batching`: concurrent requests gathered into one model call.
* :mod:`~polymodal.serve.size_limit`: the upload limit (413).
* :mod:`~polymodal.serve.page` and :mod:`~polymodal.serve.examples`: the page at ``GET /``.

Needs the ``serve`` extra (``pip install 'polymodal[serve]'``): FastAPI, uvicorn,
python-multipart, jinja2.
"""
