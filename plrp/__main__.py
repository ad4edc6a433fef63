from plrp.cli import main

main()
