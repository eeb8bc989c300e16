from django.test import TestCase

from rooms.inbound import InboundMessage, process_inbound
from tests.support import make_channel


class SmokeTest(TestCase):
    def test_first_message_opens_a_room(self):
        make_channel("sms-a", channel_type="sms", secrets={"signing_secret": "s"})
        with self.captureOnCommitCallbacks(execute=True):
            result = process_inbound(InboundMessage(channel_id="sms-a", sender="+15550001", text="hi"))
        self.assertEqual(result.status, "stored")
        self.assertEqual(result.seq, 1)
