# ShopBot image: the bot workers and the action server run from the same image.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
WORKDIR /app

# torch first and pinned: the CPU wheel, never a multi-GB CUDA build
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY bot bot
COPY nlu nlu
COPY generation generation
RUN pip install .
COPY config.yml ./
COPY data data

# Models are trained into the image unless a volume provides them (`shopbot train` skips existing ones).
RUN shopbot train
EXPOSE 8000 5055
CMD ["shopbot", "serve", "--host", "0.0.0.0"]
