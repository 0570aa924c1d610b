"""fer-edge inside your own web app: one endpoint that takes an uploaded photo and answers its faces.

    pip install 'fer-edge[api]'          # FastAPI, uvicorn, python-multipart
    uvicorn examples.web_app:app --port 8000
    curl -F file=@photo.jpg http://127.0.0.1:8000/emotions

One Recognizer is made when the app starts and shared by every request (it is thread-safe; FastAPI runs plain
`def` endpoints in a thread pool). A file that is not an image gets 400 with fer-edge's message. For a ready
server with upload limits and an OpenAPI schema, `fer-edge serve-api` does this and more.
"""
from fastapi import FastAPI, File, HTTPException, UploadFile

from fer_edge import FerEdgeError, Recognizer

app = FastAPI(title="emotions")
recognizer = Recognizer()


@app.post("/emotions")
def emotions(file: UploadFile = File(...)) -> dict:
    try:
        faces = recognizer.analyze(file.file.read())
    except FerEdgeError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    return {"faces": [{"box": list(f.box), "label": f.label, "probs": f.probs} for f in faces]}
