from polymodal.cli import main

main()
