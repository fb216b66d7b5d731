from streamer.cli.main import console

console()
