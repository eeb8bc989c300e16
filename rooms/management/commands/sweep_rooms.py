from django.core.management.base import BaseCommand

from rooms.console.inbox import wake_snoozed
from rooms.services import sweep_room_timers


class Command(BaseCommand):
    help = "One pass of the room timers (pause idle rooms, close rooms paused too long) and of the inbox's snoozes."

    def handle(self, *args, **options):
        done = sweep_room_timers()
        for room_id, status in done:
            self.stdout.write(f"{room_id} -> {status}")
        self.stdout.write(f"{len(done)} room(s) changed")
        woken = wake_snoozed()
        for room_id in woken:
            self.stdout.write(f"{room_id} -> open (snooze ended)")
        self.stdout.write(f"{len(woken)} snoozed conversation(s) reopened")
