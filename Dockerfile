# The Keepsync NAS server. Build: docker build -t keepsync .
FROM node:20-bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.base.json ./
COPY packages ./packages
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
COPY --from=build /app /app
ENV KEEPSYNC_DATA=/data KEEPSYNC_CERTS=/certs
VOLUME ["/data", "/certs"]
EXPOSE 8443
CMD ["node", "--initial-old-space-size=64", "packages/cli/dist/main.js", "server"]
