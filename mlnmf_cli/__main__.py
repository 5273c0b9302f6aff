from mlnmf_cli.cli import main

main()
